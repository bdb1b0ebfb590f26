// vLLM's router logger JSONL: {"type":"meta",...,"layers_logged":[L],"top_k":k} then one
// {"type":"route","req_id","token_idx","layer","topk_ids","topk_weights"} line per token and layer.
//
// Two facts of the recorder shape this importer: vLLM starts with a profiling forward pass whose
// records all carry one constant top-k (dropped here, see ImportOptions::min_profiling_run), and
// token_idx restarts at 0 with every forward pass, which makes each pass one trace step.
#include <algorithm>
#include <map>

#include "core/import_formats.h"
#include "core/json_text.h"

namespace grace {
namespace {

struct LayerRecords {
  std::vector<int32_t> ids;  // [record][k]
  std::vector<float> weights;
  std::vector<int64_t> token_idx;
  int64_t first_line = 0;
};

std::string FormatIds(const int32_t* ids, int k) {
  std::string s = "[";
  for (int i = 0; i < k; ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

// Records at the front that repeat the first record's top-k.
int64_t ConstantLeadingRun(const LayerRecords& layer, int k) {
  const int64_t records = static_cast<int64_t>(layer.token_idx.size());
  int64_t n = 1;
  while (n < records &&
         std::equal(layer.ids.begin(), layer.ids.begin() + k, layer.ids.begin() + n * k))
    ++n;
  return records == 0 ? 0 : n;
}

}  // namespace

StatusOr<Trace> ImportVllmJsonl(const JsonLines& lines, const std::string& path,
                                const ImportOptions& options) {
  Trace trace;
  trace.info.format = "vllm-jsonl";
  trace.info.kind = TraceKind::kTokens;
  trace.info.sources = {path};
  std::vector<LayerId> layers_logged;
  int top_k = 0;
  bool has_weights = false;
  int max_id = -1;
  std::map<LayerId, LayerRecords> layers;

  auto read_record = [&](const nlohmann::json& record, const JsonWhere& where) -> Status {
    GRACE_ASSIGN_OR_RETURN(const nlohmann::json* type, JsonMember(record, "type", where));
    if (*type == "meta") {
      if (auto it = record.find("model_id"); it != record.end() && it->is_string())
        trace.info.model = it->get<std::string>();
      if (auto it = record.find("layers_logged"); it != record.end()) {
        std::vector<int32_t> ids;
        GRACE_RETURN_IF_ERROR(JsonIntArray(*it, "layers_logged", 0, where, &ids));
        layers_logged.assign(ids.begin(), ids.end());
      }
      if (record.contains("top_k")) {
        GRACE_ASSIGN_OR_RETURN(int64_t k, JsonInt(record, "top_k", where));
        if (k < 1 || k > 1024) {
          return InvalidArgument(where.ToString() + ": field \"top_k\": expected 1..1024, got " +
                                 std::to_string(k));
        }
        top_k = static_cast<int>(k);
      }
      return Status::Ok();
    }
    if (*type != "route") {
      return InvalidArgument(where.ToString() + ": field \"type\": expected \"meta\" or " +
                             "\"route\", got " + type->dump());
    }
    GRACE_ASSIGN_OR_RETURN(int64_t layer, JsonInt(record, "layer", where));
    GRACE_ASSIGN_OR_RETURN(int64_t token_idx, JsonInt(record, "token_idx", where));
    if (!layers_logged.empty() &&
        std::find(layers_logged.begin(), layers_logged.end(), layer) == layers_logged.end()) {
      return InvalidArgument(where.ToString() + ": field \"layer\": " + std::to_string(layer) +
                             " is not in the meta line's layers_logged");
    }
    GRACE_ASSIGN_OR_RETURN(const nlohmann::json* ids, JsonMember(record, "topk_ids", where));
    LayerRecords& lr = layers[static_cast<LayerId>(layer)];
    if (lr.first_line == 0) lr.first_line = where.line;
    const size_t before = lr.ids.size();
    GRACE_RETURN_IF_ERROR(JsonIntArray(*ids, "topk_ids", 0, where, &lr.ids));
    const int k = static_cast<int>(lr.ids.size() - before);
    if (top_k == 0) top_k = k;
    if (k != top_k) {
      return InvalidArgument(where.ToString() + ": field \"topk_ids\": expected " +
                             std::to_string(top_k) + " ids, got " + std::to_string(k));
    }
    for (size_t i = before; i < lr.ids.size(); ++i) max_id = std::max(max_id, lr.ids[i]);
    const bool weights_here = record.contains("topk_weights");
    if (layers.size() == 1 && lr.token_idx.empty()) has_weights = weights_here;
    if (weights_here != has_weights) {
      return InvalidArgument(where.ToString() + ": field \"topk_weights\": present on some " +
                             "records and not on others");
    }
    if (has_weights) {
      std::vector<double> w;
      GRACE_RETURN_IF_ERROR(
          JsonNumberArray(record["topk_weights"], "topk_weights", false, where, &w));
      if (static_cast<int>(w.size()) != top_k) {
        return InvalidArgument(where.ToString() + ": field \"topk_weights\": expected " +
                               std::to_string(top_k) + " weights, got " + std::to_string(w.size()));
      }
      lr.weights.insert(lr.weights.end(), w.begin(), w.end());
    }
    lr.token_idx.push_back(token_idx);
    return Status::Ok();
  };
  GRACE_RETURN_IF_ERROR(lines(read_record));
  if (layers.empty()) return InvalidArgument(path + ": no \"route\" records");
  GRACE_RETURN_IF_ERROR(ResolveNumExperts(0, max_id, options, path, &trace));
  trace.info.top_k = top_k;

  // Drop each layer's profiling run, then cut forward passes where token_idx restarts.
  std::vector<int64_t> step_sizes;
  int64_t tokens = -1;
  LayerId first_layer = layers.begin()->first;
  std::vector<int64_t> start(layers.size());
  size_t li = 0;
  for (auto& [layer, lr] : layers) {
    trace.info.layer_ids.push_back(layer);
    const int64_t run = ConstantLeadingRun(lr, top_k);
    const int64_t records = static_cast<int64_t>(lr.token_idx.size());
    int64_t& s = start[li++];
    s = 0;
    if (options.min_profiling_run > 0 && run >= options.min_profiling_run && run < records) {
      s = run;
      trace.dropped.push_back({run, path + ": layer " + std::to_string(layer) + ": " +
                                        std::to_string(run) + " route records from line " +
                                        std::to_string(lr.first_line) +
                                        ": constant leading profiling run (top-k " +
                                        FormatIds(lr.ids.data(), top_k) + " repeated)"});
    }
    std::vector<int64_t> sizes;
    for (int64_t r = s; r < records; ++r) {
      if (r == s || lr.token_idx[r] <= lr.token_idx[r - 1]) sizes.push_back(0);
      ++sizes.back();
    }
    if (tokens < 0) {
      tokens = records - s;
      step_sizes = sizes;
    } else if (records - s != tokens || sizes != step_sizes) {
      return InvalidArgument(path + ": layer " + std::to_string(layer) + " has " +
                             std::to_string(records - s) + " tokens in " +
                             std::to_string(sizes.size()) + " forward passes, layer " +
                             std::to_string(first_layer) + " has " + std::to_string(tokens) +
                             " in " + std::to_string(step_sizes.size()));
    }
  }

  const int num_layers = static_cast<int>(layers.size());
  int64_t offset = 0;
  for (int64_t size : step_sizes) {
    TraceStep step;
    step.kind = TraceKind::kTokens;
    step.tokens.num_tokens = static_cast<int>(size);
    step.tokens.expert_ids.reserve(static_cast<size_t>(num_layers) * size * top_k);
    if (has_weights) step.tokens.gate_weights.reserve(step.tokens.expert_ids.capacity());
    li = 0;
    for (auto& [layer, lr] : layers) {
      const size_t from = static_cast<size_t>(start[li++] + offset) * top_k;
      const size_t n = static_cast<size_t>(size) * top_k;
      step.tokens.expert_ids.insert(step.tokens.expert_ids.end(), lr.ids.begin() + from,
                                    lr.ids.begin() + from + n);
      if (has_weights) {
        step.tokens.gate_weights.insert(step.tokens.gate_weights.end(), lr.weights.begin() + from,
                                        lr.weights.begin() + from + n);
      }
    }
    offset += size;
    trace.steps.push_back(std::move(step));
  }
  return trace;
}

}  // namespace grace
