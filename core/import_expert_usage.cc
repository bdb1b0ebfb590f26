// Expert usage per layer, as recorded for google/switch-base-128:
// {"num_experts":128,"layers":[1,3,...],"expert_usage_by_layer":{"<layer>":{"<expert>":count}}}.
// Experts missing from a layer's object were never chosen (count 0). Switch Transformers route
// each token to exactly one expert, so top-k is 1 and a layer's sum is its token count.
#include "core/import_formats.h"
#include "core/json_text.h"

namespace grace {

StatusOr<Trace> ImportExpertUsageByLayer(const nlohmann::json& doc, const std::string& path) {
  Trace trace;
  trace.info.format = "expert-usage-by-layer";
  trace.info.kind = TraceKind::kCounts;
  trace.info.top_k = 1;
  trace.info.sources = {path};
  const JsonWhere where{path, 0};
  GRACE_ASSIGN_OR_RETURN(int64_t experts, JsonInt(doc, "num_experts", where));
  if (experts < 1 || experts > 65536) {
    return InvalidArgument(where.ToString() + ": field \"num_experts\": expected 1..65536, got " +
                           std::to_string(experts));
  }
  trace.info.num_experts = static_cast<int>(experts);
  GRACE_ASSIGN_OR_RETURN(const nlohmann::json* usage,
                         JsonMember(doc, "expert_usage_by_layer", where));
  if (!usage->is_object() || usage->empty()) {
    return InvalidArgument(where.ToString() +
                           ": field \"expert_usage_by_layer\": expected a non-empty object");
  }
  std::vector<int32_t> layers;
  if (auto it = doc.find("layers"); it != doc.end()) {
    GRACE_RETURN_IF_ERROR(JsonIntArray(*it, "layers", 0, where, &layers));
  } else {
    for (const auto& [key, value] : usage->items()) {
      GRACE_ASSIGN_OR_RETURN(int64_t layer, ParseKeyInt(key, "expert_usage_by_layer", where));
      layers.push_back(static_cast<int32_t>(layer));
    }
  }
  if (layers.size() != usage->size()) {
    return InvalidArgument(where.ToString() + ": field \"expert_usage_by_layer\": has " +
                           std::to_string(usage->size()) + " layers, \"layers\" lists " +
                           std::to_string(layers.size()));
  }
  TraceStep step;
  step.kind = TraceKind::kCounts;
  step.counts.counts.assign(layers.size() * experts, 0.0);
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::string layer_key = std::to_string(layers[l]);
    auto it = usage->find(layer_key);
    if (it == usage->end() || !it->is_object()) {
      return InvalidArgument(where.ToString() + ": field \"expert_usage_by_layer." + layer_key +
                             "\": missing, or not an object of expert counts");
    }
    for (const auto& [key, value] : it->items()) {
      const std::string field = "expert_usage_by_layer." + layer_key + "." + key;
      GRACE_ASSIGN_OR_RETURN(int64_t expert, ParseKeyInt(key, field, where));
      if (expert >= experts || !value.is_number() || value.get<double>() < 0) {
        return InvalidArgument(where.ToString() + ": field \"" + field +
                               "\": expected an expert below " + std::to_string(experts) +
                               " with a non-negative count");
      }
      step.counts.counts[l * experts + expert] = value.get<double>();
    }
    trace.info.layer_ids.push_back(layers[l]);
  }
  trace.steps.push_back(std::move(step));
  NoteCountAnomalies(&trace);
  return trace;
}

}  // namespace grace
