// Per-domain expert counts recorded for OLMoE and Mixtral, in two shapes:
//  - {"model","kind","domain","layers":[0,7,15],"num_experts","counts":{"<layer>":[E counts]}};
//  - {"model","kind","domain","layers":["0->7",...],"num_experts","matrices":{"0->7":[[E x E]]}}:
//    slot-aligned cross-layer pairs (the i-th choice at layer a with the i-th choice at layer b).
//    Row sums are layer a's counts and column sums layer b's, so the trace also gets a count step.
// kind "..._top1" counts only each token's first choice, so top-k is 1 there.
#include <algorithm>
#include <cmath>
#include <map>

#include "core/import_formats.h"
#include "core/json_text.h"

namespace grace {
namespace {

Status ReadHeader(const nlohmann::json& doc, const JsonWhere& where, Trace* trace) {
  if (!doc.is_object()) return InvalidArgument(where.ToString() + ": expected a JSON object");
  for (const char* key : {"model", "kind", "domain"}) {
    if (auto it = doc.find(key); it != doc.end() && !it->is_string()) {
      return InvalidArgument(where.ToString() + ": field \"" + key + "\": expected a string");
    }
  }
  trace->info.model = doc.value("model", "");
  trace->info.domain = doc.value("domain", "");
  GRACE_ASSIGN_OR_RETURN(int64_t experts, JsonInt(doc, "num_experts", where));
  if (experts < 1 || experts > 65536) {
    return InvalidArgument(where.ToString() + ": field \"num_experts\": expected 1..65536, got " +
                           std::to_string(experts));
  }
  trace->info.num_experts = static_cast<int>(experts);
  const std::string kind = doc.value("kind", "");
  if (kind.size() >= 5 && kind.compare(kind.size() - 5, 5, "_top1") == 0) {
    trace->info.top_k = 1;
  } else if (const KnownModel* m = FindKnownModel(trace->info.model); m != nullptr) {
    trace->info.top_k = m->top_k;
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Trace> ImportExpertCounts(const nlohmann::json& doc, const std::string& path) {
  Trace trace;
  trace.info.format = "expert-counts";
  trace.info.kind = TraceKind::kCounts;
  trace.info.sources = {path};
  const JsonWhere where{path, 0};
  GRACE_RETURN_IF_ERROR(ReadHeader(doc, where, &trace));
  GRACE_ASSIGN_OR_RETURN(const nlohmann::json* layers, JsonMember(doc, "layers", where));
  std::vector<int32_t> layer_ids;
  GRACE_RETURN_IF_ERROR(JsonIntArray(*layers, "layers", 0, where, &layer_ids));
  GRACE_ASSIGN_OR_RETURN(const nlohmann::json* counts, JsonMember(doc, "counts", where));
  if (!counts->is_object()) {
    return InvalidArgument(where.ToString() + ": field \"counts\": expected an object");
  }
  if (counts->size() != layer_ids.size()) {
    return InvalidArgument(where.ToString() + ": field \"counts\": has " +
                           std::to_string(counts->size()) + " layers, \"layers\" lists " +
                           std::to_string(layer_ids.size()));
  }
  TraceStep step;
  step.kind = TraceKind::kCounts;
  for (int32_t layer : layer_ids) {
    const std::string key = std::to_string(layer);
    auto it = counts->find(key);
    if (it == counts->end()) {
      return InvalidArgument(where.ToString() + ": field \"counts\": missing layer \"" + key +
                             "\"");
    }
    const size_t before = step.counts.counts.size();
    GRACE_RETURN_IF_ERROR(JsonNumberArray(*it, "counts." + key, true, where, &step.counts.counts));
    if (step.counts.counts.size() - before != static_cast<size_t>(trace.info.num_experts)) {
      return InvalidArgument(where.ToString() + ": field \"counts." + key + "\": expected " +
                             std::to_string(trace.info.num_experts) + " counts, got " +
                             std::to_string(step.counts.counts.size() - before));
    }
    trace.info.layer_ids.push_back(layer);
  }
  trace.steps.push_back(std::move(step));
  NoteCountAnomalies(&trace);
  return trace;
}

StatusOr<Trace> ImportCrossLayerCounts(const nlohmann::json& doc, const std::string& path) {
  Trace trace;
  trace.info.format = "expert-counts-crosslayer";
  trace.info.kind = TraceKind::kCounts;
  trace.info.sources = {path};
  const JsonWhere where{path, 0};
  GRACE_RETURN_IF_ERROR(ReadHeader(doc, where, &trace));
  const int experts = trace.info.num_experts;
  GRACE_ASSIGN_OR_RETURN(const nlohmann::json* pairs, JsonMember(doc, "layers", where));
  GRACE_ASSIGN_OR_RETURN(const nlohmann::json* matrices, JsonMember(doc, "matrices", where));
  if (!pairs->is_array() || pairs->empty() || !matrices->is_object()) {
    return InvalidArgument(where.ToString() +
                           ": expected \"layers\": [\"a->b\", ...] and \"matrices\": {...}");
  }
  std::map<LayerId, std::vector<double>> layer_counts;  // the first derivation of each layer
  for (const nlohmann::json& pair : *pairs) {
    const std::string name = pair.is_string() ? pair.get<std::string>() : pair.dump();
    const size_t arrow = name.find("->");
    if (arrow == std::string::npos) {
      return InvalidArgument(where.ToString() + ": field \"layers\": expected \"a->b\", got " +
                             pair.dump());
    }
    GRACE_ASSIGN_OR_RETURN(int64_t from, ParseKeyInt(name.substr(0, arrow), "layers", where));
    GRACE_ASSIGN_OR_RETURN(int64_t to, ParseKeyInt(name.substr(arrow + 2), "layers", where));
    auto it = matrices->find(name);
    if (it == matrices->end() || !it->is_array() || static_cast<int>(it->size()) != experts) {
      return InvalidArgument(where.ToString() + ": field \"matrices." + name + "\": expected " +
                             std::to_string(experts) + " rows");
    }
    CrossLayerCounts cross;
    cross.from_layer = static_cast<LayerId>(from);
    cross.to_layer = static_cast<LayerId>(to);
    for (int a = 0; a < experts; ++a) {
      const std::string field = "matrices." + name + "[" + std::to_string(a) + "]";
      GRACE_RETURN_IF_ERROR(JsonNumberArray((*it)[a], field, true, where, &cross.matrix));
      if (cross.matrix.size() != static_cast<size_t>(a + 1) * experts) {
        return InvalidArgument(where.ToString() + ": field \"" + field + "\": expected " +
                               std::to_string(experts) + " numbers");
      }
    }
    std::vector<double> rows(experts, 0.0), cols(experts, 0.0);
    for (int a = 0; a < experts; ++a) {
      for (int b = 0; b < experts; ++b) {
        rows[a] += cross.matrix[static_cast<size_t>(a) * experts + b];
        cols[b] += cross.matrix[static_cast<size_t>(a) * experts + b];
      }
    }
    for (auto [layer, derived] : {std::pair{cross.from_layer, &rows}, {cross.to_layer, &cols}}) {
      auto [entry, inserted] = layer_counts.emplace(layer, *derived);
      if (!inserted && entry->second != *derived) {
        trace.notes.push_back(path + ": layer " + std::to_string(layer) +
                              " counts derived from two matrices differ; the first is kept");
      }
    }
    trace.cross_layer.push_back(std::move(cross));
  }
  TraceStep step;
  step.kind = TraceKind::kCounts;
  for (const auto& [layer, counts] : layer_counts) {
    trace.info.layer_ids.push_back(layer);
    step.counts.counts.insert(step.counts.counts.end(), counts.begin(), counts.end());
  }
  trace.steps.push_back(std::move(step));
  trace.notes.push_back(path + ": per-layer counts derived from the cross-layer matrices");
  NoteCountAnomalies(&trace);
  return trace;
}

}  // namespace grace
