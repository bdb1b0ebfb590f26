// Expert popularity per MMLU subject, recorded for Mixtral-8x7B:
// {"total_input_tokens": n, "expert_popularity": [[layers x experts]]}. The subject is in the file
// name (expert_popularity_<subject>.json) and becomes the trace's domain.
#include <filesystem>

#include "core/import_formats.h"
#include "core/json_text.h"

namespace grace {

StatusOr<Trace> ImportExpertPopularity(const nlohmann::json& doc, const std::string& path) {
  Trace trace;
  trace.info.format = "expert-popularity";
  trace.info.kind = TraceKind::kCounts;
  trace.info.sources = {path};
  const JsonWhere where{path, 0};
  GRACE_ASSIGN_OR_RETURN(const nlohmann::json* popularity,
                         JsonMember(doc, "expert_popularity", where));
  if (!popularity->is_array() || popularity->empty()) {
    return InvalidArgument(where.ToString() +
                           ": field \"expert_popularity\": expected a [layers][experts] array");
  }
  TraceStep step;
  step.kind = TraceKind::kCounts;
  for (size_t l = 0; l < popularity->size(); ++l) {
    const std::string field = "expert_popularity[" + std::to_string(l) + "]";
    const size_t before = step.counts.counts.size();
    GRACE_RETURN_IF_ERROR(
        JsonNumberArray((*popularity)[l], field, true, where, &step.counts.counts));
    const int experts = static_cast<int>(step.counts.counts.size() - before);
    if (l == 0) trace.info.num_experts = experts;
    if (experts != trace.info.num_experts || experts == 0) {
      return InvalidArgument(where.ToString() + ": field \"" + field + "\": expected " +
                             std::to_string(trace.info.num_experts) + " experts, got " +
                             std::to_string(experts));
    }
    trace.info.layer_ids.push_back(static_cast<LayerId>(l));
  }
  trace.steps.push_back(std::move(step));
  if (doc.contains("total_input_tokens")) {
    GRACE_ASSIGN_OR_RETURN(int64_t tokens, JsonInt(doc, "total_input_tokens", where));
    trace.notes.push_back(path + ": total_input_tokens " + std::to_string(tokens));
  }
  const std::string stem = std::filesystem::path(path).stem().string();
  const std::string prefix = "expert_popularity_";
  if (stem.rfind(prefix, 0) == 0) trace.info.domain = stem.substr(prefix.size());
  NoteCountAnomalies(&trace);
  return trace;
}

}  // namespace grace
