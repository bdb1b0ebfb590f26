// SGLang's expert distribution recorder output, also its --init-expert-location input:
// {"logical_count": [[layers x experts]]}, or one such matrix per forward pass
// ([passes][layers][experts]). Every layer of the model is present, dense ones as zeros.
#include "core/import_formats.h"
#include "core/json_text.h"

namespace grace {
namespace {

Status ReadMatrix(const nlohmann::json& matrix, const std::string& field, const JsonWhere& where,
                  Trace* trace) {
  if (!matrix.is_array() || matrix.empty()) {
    return InvalidArgument(where.ToString() + ": field \"" + field +
                           "\": expected a non-empty [layers][experts] array");
  }
  TraceStep step;
  step.kind = TraceKind::kCounts;
  const int layers = static_cast<int>(matrix.size());
  for (int l = 0; l < layers; ++l) {
    const std::string row_field = field + "[" + std::to_string(l) + "]";
    const size_t before = step.counts.counts.size();
    GRACE_RETURN_IF_ERROR(JsonNumberArray(matrix[l], row_field, true, where, &step.counts.counts));
    const int experts = static_cast<int>(step.counts.counts.size() - before);
    if (trace->info.num_experts == 0) trace->info.num_experts = experts;
    if (experts != trace->info.num_experts || experts == 0) {
      return InvalidArgument(where.ToString() + ": field \"" + row_field + "\": expected " +
                             std::to_string(trace->info.num_experts) + " experts, got " +
                             std::to_string(experts));
    }
  }
  if (trace->info.layer_ids.empty()) {
    for (int l = 0; l < layers; ++l) trace->info.layer_ids.push_back(l);
  } else if (layers != trace->info.num_layers()) {
    return InvalidArgument(where.ToString() + ": field \"" + field + "\": expected " +
                           std::to_string(trace->info.num_layers()) + " layers, got " +
                           std::to_string(layers));
  }
  trace->steps.push_back(std::move(step));
  return Status::Ok();
}

}  // namespace

StatusOr<Trace> ImportSglangLogicalCount(const nlohmann::json& doc, const std::string& path) {
  Trace trace;
  trace.info.format = "sglang-logical-count";
  trace.info.kind = TraceKind::kCounts;
  trace.info.sources = {path};
  const JsonWhere where{path, 0};
  GRACE_ASSIGN_OR_RETURN(const nlohmann::json* counts, JsonMember(doc, "logical_count", where));
  const bool per_pass = counts->is_array() && !counts->empty() && (*counts)[0].is_array() &&
                        !(*counts)[0].empty() && (*counts)[0][0].is_array();
  if (per_pass) {
    for (size_t s = 0; s < counts->size(); ++s) {
      GRACE_RETURN_IF_ERROR(
          ReadMatrix((*counts)[s], "logical_count[" + std::to_string(s) + "]", where, &trace));
    }
  } else {
    GRACE_RETURN_IF_ERROR(ReadMatrix(*counts, "logical_count", where, &trace));
  }
  NoteCountAnomalies(&trace);
  return trace;
}

}  // namespace grace
