#include "core/trace_import.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "core/import_formats.h"
#include "core/json_text.h"
#include "core/native_trace.h"
#include "core/npy_array.h"
#include "core/torch_pickle.h"
#include "core/trace_file.h"
#include "core/zip_stored.h"

namespace grace {
namespace {

// Models named by the real sources, for the figures their files leave out.
constexpr KnownModel kKnownModels[] = {
    {"qwen1.5-moe-a2.7b", "Qwen1.5-MoE-A2.7B", 60, 4},
    {"qwen3-30b-a3b", "Qwen3-30B-A3B", 128, 8},
    {"deepseek-v3", "DeepSeek-V3", 256, 8},
    {"olmoe", "OLMoE-1B-7B", 64, 8},
    {"mixtral", "Mixtral-8x7B", 8, 2},
    {"mistral", "Mixtral-8x7B", 8, 2},  // the domain-count files call Mixtral "mistral"
    {"switch-base-128", "switch-base-128", 128, 1},
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string LayerList(const std::vector<LayerId>& layers) {
  std::string s = "[";
  for (size_t i = 0; i < layers.size(); ++i) {
    if (i == 8 && layers.size() > 10) {
      s += ", ... " + std::to_string(layers.back());
      break;
    }
    s += (i ? ", " : "") + std::to_string(layers[i]);
  }
  return s + "]";
}

// A parsed file: its format and, for whole-file JSON, the document.
struct Detected {
  std::string format;
  std::string text;
  nlohmann::json doc;
};

bool IsVllmResponse(const nlohmann::json& j) {
  if (j.contains("routed_experts") || j.contains("prompt_routed_experts")) return true;
  auto c = j.find("choices");
  return c != j.end() && c->is_array() && !c->empty() && c->front().is_object() &&
         c->front().contains("routed_experts");
}

// The records of a JSONL file, read as they are parsed: memory holds one line, not the file.
JsonLines JsonLinesOfFile(const std::string& path) {
  return [path](const JsonRecordFn& fn) {
    return ForEachFileLine(path, kMaxLineBytes, [&](std::string_view line, int64_t number) {
      return ParseJsonLine(line, JsonWhere{path, number}, fn);
    });
  };
}

StatusOr<Detected> Detect(const std::string& path) {
  // The format is sniffed from the first bytes: a file that is neither native nor JSON is
  // refused before the rest of it is read.
  constexpr size_t kSniffBytes = 64 * 1024;
  GRACE_ASSIGN_OR_RETURN(std::string prefix, ReadFilePrefix(path, kSniffBytes));
  Detected d;
  if (prefix.size() >= sizeof(kNativeTraceMagic) &&
      std::memcmp(prefix.data(), kNativeTraceMagic, sizeof(kNativeTraceMagic)) == 0) {
    d.format = "native";
    return d;
  }
  // The serving stacks' binary dumps (a torch.save .pt, a .npy array) are told by their magic.
  const bool stack_dump =
      LooksLikeZip(prefix) || LooksLikeLegacyTorchSave(prefix) || LooksLikeNpy(prefix);
  const size_t sniffed = prefix.find_first_not_of(" \t\r\n");
  if (!stack_dump && sniffed != std::string::npos && prefix[sniffed] != '{') {
    return InvalidArgument(path + ": byte offset " + std::to_string(sniffed) +
                           ": not a trace grace knows (expected JSON, JSONL, grace's native "
                           "format, a torch.save .pt or a .npy array)");
  }
  if (sniffed == std::string::npos && prefix.size() == kSniffBytes) {
    return InvalidArgument(path + ": the first " + std::to_string(kSniffBytes) +
                           " bytes are blank: not a trace grace knows");
  }
  // A JSONL format is told by its first record; its file is then streamed (JsonLinesOfFile), not
  // read whole. The first line must lie within the sniffed bytes.
  if (!stack_dump && sniffed != std::string::npos) {
    const size_t first_end = prefix.find('\n', sniffed);
    if (first_end != std::string::npos || prefix.size() < kSniffBytes) {
      const std::string_view line = std::string_view(prefix).substr(
          sniffed, first_end == std::string::npos ? std::string::npos : first_end - sniffed);
      nlohmann::json first = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
      const bool more_lines = first_end != std::string::npos &&
                              prefix.find_first_not_of(" \t\r\n", first_end) != std::string::npos;
      if (!first.is_discarded() && first.is_object()) {
        if (first.contains("type") && (first.at("type") == "meta" || first.at("type") == "route")) {
          d.format = "vllm-jsonl";
          return d;
        }
        if (first.contains("problem_id") && first.contains("experts")) {
          d.format = "routing-jsonl";
          return d;
        }
        if (IsVllmResponse(first) && more_lines) {
          d.format = "vllm-routed-experts-jsonl";
          return d;
        }
      }
    }
  }
  GRACE_ASSIGN_OR_RETURN(d.text, ReadWholeFile(path));
  if (LooksLikeZip(d.text) || LooksLikeLegacyTorchSave(d.text)) {
    d.format = "sglang-pt";
    return d;
  }
  if (LooksLikeNpy(d.text)) {
    d.format = "vllm-routed-experts-npy";
    return d;
  }
  const size_t start = d.text.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return InvalidArgument(path + ": empty file, no trace in it");
  if (d.text[start] != '{') {
    return InvalidArgument(path + ": byte offset " + std::to_string(start) +
                           ": not a trace grace knows (expected JSON, JSONL, grace's native "
                           "format, a torch.save .pt or a .npy array)");
  }
  // JSONL formats are recognised by their first record; everything else is one JSON document.
  const size_t line_end = d.text.find('\n', start);
  const std::string_view first_line = std::string_view(d.text).substr(
      start, line_end == std::string::npos ? std::string::npos : line_end - start);
  const int64_t first_line_number =
      1 + std::count(d.text.begin(), d.text.begin() + static_cast<int64_t>(start), '\n');
  StatusOr<nlohmann::json> first = ParseJson(first_line, JsonWhere{path, first_line_number});
  if (first.ok() && first->is_object()) {
    // A first line past the sniffed bytes: the format is known now, and the file is streamed.
    if (first->contains("type") && (first->at("type") == "meta" || first->at("type") == "route")) {
      d.format = "vllm-jsonl";
    } else if (first->contains("problem_id") && first->contains("experts")) {
      d.format = "routing-jsonl";
    } else if (IsVllmResponse(*first)) {
      d.format = "vllm-routed-experts-jsonl";
    }
    if (!d.format.empty()) {
      std::string().swap(d.text);
      return d;
    }
  }
  const bool one_line = line_end == std::string::npos ||
                        d.text.find_first_not_of(" \t\r\n", line_end) == std::string::npos;
  if (one_line && first.ok()) {
    d.doc = std::move(*first);
  } else {
    GRACE_ASSIGN_OR_RETURN(d.doc, ParseJson(d.text, JsonWhere{path, 0}));
  }
  d.text.clear();
  if (!d.doc.is_object()) return InvalidArgument(path + ": expected a JSON object at the top");
  if (IsVllmResponse(d.doc)) {
    d.format = "vllm-routed-experts";
  } else if (d.doc.contains("logical_count")) {
    d.format = "sglang-logical-count";
  } else if (d.doc.contains("expert_popularity")) {
    d.format = "expert-popularity";
  } else if (d.doc.contains("expert_usage_by_layer")) {
    d.format = "expert-usage-by-layer";
  } else if (d.doc.contains("matrices")) {
    d.format = "expert-counts-crosslayer";
  } else if (d.doc.contains("counts")) {
    d.format = "expert-counts";
  } else {
    std::string keys;
    for (const auto& [key, value] : d.doc.items()) keys += (keys.empty() ? "" : ", ") + key;
    return InvalidArgument(path + ": not a trace format grace knows (top-level keys: " + keys +
                           ")");
  }
  return d;
}

StatusOr<Trace> ImportOne(const std::string& path, const ImportOptions& options) {
  GRACE_ASSIGN_OR_RETURN(Detected d, Detect(path));
  if (d.format == "native") return ReadNativeTrace(path);
  if (d.format == "vllm-jsonl") return ImportVllmJsonl(JsonLinesOfFile(path), path, options);
  if (d.format == "routing-jsonl") {
    return ImportRoutingJsonl(JsonLinesOfFile(path), path, options);
  }
  if (d.format == "vllm-routed-experts-jsonl") {
    return ImportVllmRoutedExperts(JsonLinesOfFile(path), nullptr, path, options);
  }
  if (d.format == "sglang-pt") return ImportSglangRecorderDump(std::move(d.text), path);
  if (d.format == "vllm-routed-experts-npy")
    return ImportVllmRoutedExpertsNpy(d.text, path, options);
  if (d.format == "vllm-routed-experts") {
    return ImportVllmRoutedExperts(JsonLinesOfFile(path), &d.doc, path, options);  // one document
  }
  if (d.format == "sglang-logical-count") return ImportSglangLogicalCount(d.doc, path);
  if (d.format == "expert-popularity") return ImportExpertPopularity(d.doc, path);
  if (d.format == "expert-usage-by-layer") return ImportExpertUsageByLayer(d.doc, path);
  if (d.format == "expert-counts-crosslayer") return ImportCrossLayerCounts(d.doc, path);
  return ImportExpertCounts(d.doc, path);
}

bool Disjoint(const std::vector<LayerId>& a, const std::vector<LayerId>& b) {
  for (LayerId l : a) {
    if (std::find(b.begin(), b.end(), l) != b.end()) return false;
  }
  return true;
}

void AppendAnnotations(Trace&& part, Trace* into) {
  for (auto& s : part.info.sources) into->info.sources.push_back(std::move(s));
  for (auto& d : part.dropped) into->dropped.push_back(std::move(d));
  for (auto& n : part.notes) into->notes.push_back(std::move(n));
  for (auto& c : part.cross_layer) into->cross_layer.push_back(std::move(c));
}

// Joins single-run vLLM files of different layers: step s of the result holds every layer's
// tokens of step s, layers in ascending order.
Status JoinLayers(Trace&& part, Trace* into) {
  const std::string& path = part.info.sources.front();
  std::vector<int> sizes_into, sizes_part;
  for (const TraceStep& s : into->steps) sizes_into.push_back(s.tokens.num_tokens);
  for (const TraceStep& s : part.steps) sizes_part.push_back(s.tokens.num_tokens);
  if (sizes_into != sizes_part) {
    return InvalidArgument(path + ": cannot join with " + into->info.sources.front() +
                           " as more layers of one run: " + std::to_string(part.TotalTokens()) +
                           " tokens in " + std::to_string(sizes_part.size()) +
                           " forward passes vs " + std::to_string(into->TotalTokens()) + " in " +
                           std::to_string(sizes_into.size()));
  }
  const bool weights = !into->steps.front().tokens.gate_weights.empty() &&
                       !part.steps.front().tokens.gate_weights.empty();
  std::vector<LayerId> layers = into->info.layer_ids;
  layers.insert(layers.end(), part.info.layer_ids.begin(), part.info.layer_ids.end());
  std::sort(layers.begin(), layers.end());
  const int k = into->info.top_k;
  for (size_t s = 0; s < into->steps.size(); ++s) {
    TokenBatch& a = into->steps[s].tokens;
    const TokenBatch& b = part.steps[s].tokens;
    const size_t per_layer = static_cast<size_t>(a.num_tokens) * k;
    TokenBatch joined;
    joined.num_tokens = a.num_tokens;
    for (LayerId layer : layers) {
      auto ia = std::find(into->info.layer_ids.begin(), into->info.layer_ids.end(), layer);
      const bool from_a = ia != into->info.layer_ids.end();
      const TokenBatch& src = from_a ? a : b;
      const auto& src_layers = from_a ? into->info.layer_ids : part.info.layer_ids;
      const size_t index =
          std::find(src_layers.begin(), src_layers.end(), layer) - src_layers.begin();
      const size_t from = index * per_layer;
      joined.expert_ids.insert(joined.expert_ids.end(), src.expert_ids.begin() + from,
                               src.expert_ids.begin() + from + per_layer);
      if (weights) {
        joined.gate_weights.insert(joined.gate_weights.end(), src.gate_weights.begin() + from,
                                   src.gate_weights.begin() + from + per_layer);
      }
    }
    a = std::move(joined);
  }
  into->info.layer_ids = layers;
  into->info.num_experts = std::max(into->info.num_experts, part.info.num_experts);
  AppendAnnotations(std::move(part), into);
  return Status::Ok();
}

Status Concatenate(Trace&& part, Trace* into) {
  const std::string& path = part.info.sources.front();
  const std::string first = into->info.sources.front();
  const TraceInfo& a = into->info;
  const TraceInfo& b = part.info;
  std::string why;
  if (a.kind != b.kind) {
    why = std::string(TraceKindName(b.kind)) + " vs " + TraceKindName(a.kind);
  } else if (a.layer_ids != b.layer_ids) {
    why = "layers " + LayerList(b.layer_ids) + " vs " + LayerList(a.layer_ids);
  } else if (a.kind == TraceKind::kCounts && a.num_experts != b.num_experts) {
    why = std::to_string(b.num_experts) + " experts vs " + std::to_string(a.num_experts);
  } else if (!a.model.empty() && !b.model.empty() && a.model != b.model) {
    why = "model " + b.model + " vs " + a.model;
  } else if (a.top_k != 0 && b.top_k != 0 && a.top_k != b.top_k) {
    why = "top-" + std::to_string(b.top_k) + " vs top-" + std::to_string(a.top_k);
  } else if (a.kind == TraceKind::kTokens && !into->steps.empty() && !part.steps.empty() &&
             into->steps.front().tokens.gate_weights.empty() !=
                 part.steps.front().tokens.gate_weights.empty()) {
    why = "gate weights in one file only";
  }
  if (!why.empty()) {
    return InvalidArgument(path + ": does not fit with " + first + " in one trace: " + why);
  }
  if (a.model.empty()) into->info.model = b.model;
  if (a.top_k == 0) into->info.top_k = b.top_k;
  into->info.num_experts = std::max(a.num_experts, b.num_experts);
  if (b.format != a.format && into->info.format.find(b.format) == std::string::npos)
    into->info.format += "+" + b.format;
  if (!b.domain.empty() && ("," + a.domain + ",").find("," + b.domain + ",") == std::string::npos) {
    into->info.domain += (a.domain.empty() ? "" : ",") + b.domain;
  }
  into->notes.push_back(path + ": steps " + std::to_string(into->steps.size()) + ".." +
                        std::to_string(into->steps.size() + part.steps.size() - 1));
  for (TraceStep& s : part.steps) into->steps.push_back(std::move(s));
  AppendAnnotations(std::move(part), into);
  return Status::Ok();
}

}  // namespace

const KnownModel* FindKnownModel(std::string_view model_name) {
  const std::string lower = Lower(model_name);
  if (lower.empty()) return nullptr;
  for (const KnownModel& m : kKnownModels) {
    if (lower.find(m.match) != std::string::npos) return &m;
  }
  return nullptr;
}

Status ResolveNumExperts(int from_file, int max_id_seen, const ImportOptions& options,
                         const std::string& path, Trace* trace) {
  int experts = from_file;
  std::string how;
  if (experts == 0 && options.num_experts > 0) experts = options.num_experts;
  if (experts == 0) {
    if (const KnownModel* m = FindKnownModel(trace->info.model); m != nullptr) {
      experts = m->num_experts;
    }
  }
  if (experts == 0) {
    experts = max_id_seen + 1;
    trace->notes.push_back(path + ": the file does not give the number of experts; " +
                           std::to_string(experts) + " is the largest id seen plus one");
  }
  if (max_id_seen >= experts) {
    return InvalidArgument(path + ": expert id " + std::to_string(max_id_seen) +
                           " is out of range for " + std::to_string(experts) + " experts");
  }
  trace->info.num_experts = experts;
  return Status::Ok();
}

void NoteCountAnomalies(Trace* trace) {
  const std::string& path = trace->info.sources.front();
  const auto loads = trace->LayerLoads();
  std::vector<LayerId> zero;
  double lo = 0, hi = 0;
  LayerId lo_layer = 0, hi_layer = 0;
  bool any = false;
  for (size_t l = 0; l < loads.size(); ++l) {
    double total = 0;
    for (double v : loads[l]) total += v;
    const LayerId id = trace->info.layer_ids[l];
    if (total == 0) {
      zero.push_back(id);
      continue;
    }
    if (!any || total < lo) lo = total, lo_layer = id;
    if (!any || total > hi) hi = total, hi_layer = id;
    any = true;
  }
  if (!zero.empty()) {
    trace->notes.push_back(path + ": layers " + LayerList(zero) +
                           " are all zero (dense layers, or never routed); kept as the file has "
                           "them");
  }
  if (any && hi != lo) {
    char buf[200];
    std::snprintf(buf, sizeof(buf),
                  ": per-layer totals differ: %.0f (layer %d) to %.0f (layer %d), %.4f%% apart", lo,
                  lo_layer, hi, hi_layer, 100.0 * (hi - lo) / hi);
    trace->notes.push_back(path + buf);
  }
}

StatusOr<std::string> DetectTraceFormat(const std::string& path) {
  GRACE_ASSIGN_OR_RETURN(Detected d, Detect(path));
  return d.format;
}

StatusOr<Trace> ImportTraces(const std::vector<std::string>& paths, const ImportOptions& options) {
  if (paths.empty()) return InvalidArgument("no trace files given");
  Trace result;
  for (size_t i = 0; i < paths.size(); ++i) {
    GRACE_ASSIGN_OR_RETURN(Trace part, ImportOne(paths[i], options));
    if (i == 0) {
      result = std::move(part);
      continue;
    }
    const bool join = result.info.format == "vllm-jsonl" && part.info.format == "vllm-jsonl" &&
                      result.info.model == part.info.model &&
                      result.info.top_k == part.info.top_k &&
                      Disjoint(result.info.layer_ids, part.info.layer_ids);
    if (join) {
      GRACE_RETURN_IF_ERROR(JoinLayers(std::move(part), &result));
    } else {
      GRACE_RETURN_IF_ERROR(Concatenate(std::move(part), &result));
    }
  }
  return result;
}

}  // namespace grace
