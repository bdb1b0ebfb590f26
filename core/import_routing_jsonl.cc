// Per-(token, layer) routing JSONL, as recorded for Mixtral on HumanEval and GSM8K: one line
// {"dataset","problem_id","layer","experts":[k ints],"gating_probs":[k floats],"token_idx"} per
// token and layer, in no particular order. A token is (problem_id, token_idx); tokens that lack
// some layer are dropped and reported, the rest kept; each problem becomes one trace step.
#include <algorithm>
#include <map>
#include <set>

#include "core/import_formats.h"
#include "core/json_text.h"

namespace grace {
namespace {

struct TokenRecords {
  std::map<LayerId, int64_t> line_of_layer;            // where each layer's record sits
  std::map<LayerId, std::pair<size_t, size_t>> slice;  // layer -> [offset in ids, count]
};

}  // namespace

StatusOr<Trace> ImportRoutingJsonl(const JsonLines& lines, const std::string& path,
                                   const ImportOptions& options) {
  Trace trace;
  trace.info.format = "routing-jsonl";
  trace.info.kind = TraceKind::kTokens;
  trace.info.sources = {path};
  std::vector<int32_t> ids;
  std::vector<double> weights;
  std::map<std::pair<int64_t, int64_t>, TokenRecords> tokens;  // ordered by problem, token
  std::set<LayerId> layer_set;
  std::set<std::string> datasets;
  int top_k = 0;
  int max_id = -1;
  bool has_weights = false;
  int64_t records = 0;

  auto read_record = [&](const nlohmann::json& record, const JsonWhere& where) -> Status {
    GRACE_ASSIGN_OR_RETURN(int64_t problem, JsonInt(record, "problem_id", where));
    GRACE_ASSIGN_OR_RETURN(int64_t token, JsonInt(record, "token_idx", where));
    GRACE_ASSIGN_OR_RETURN(int64_t layer, JsonInt(record, "layer", where));
    if (layer < 0 || layer > 100000) {
      return InvalidArgument(where.ToString() + ": field \"layer\": expected 0..100000, got " +
                             std::to_string(layer));
    }
    GRACE_ASSIGN_OR_RETURN(const nlohmann::json* experts, JsonMember(record, "experts", where));
    const size_t before = ids.size();
    GRACE_RETURN_IF_ERROR(JsonIntArray(*experts, "experts", 0, where, &ids));
    const int k = static_cast<int>(ids.size() - before);
    if (records == 0) {
      top_k = k;
      has_weights = record.contains("gating_probs");
    }
    if (k != top_k || k == 0) {
      return InvalidArgument(where.ToString() + ": field \"experts\": expected " +
                             std::to_string(top_k) + " ids, got " + std::to_string(k));
    }
    for (size_t i = before; i < ids.size(); ++i) max_id = std::max(max_id, ids[i]);
    if (record.contains("gating_probs") != has_weights) {
      return InvalidArgument(where.ToString() + ": field \"gating_probs\": present on some " +
                             "records and not on others");
    }
    if (has_weights) {
      const size_t wb = weights.size();
      GRACE_RETURN_IF_ERROR(
          JsonNumberArray(record["gating_probs"], "gating_probs", false, where, &weights));
      if (weights.size() - wb != static_cast<size_t>(k)) {
        return InvalidArgument(where.ToString() + ": field \"gating_probs\": expected " +
                               std::to_string(k) + " numbers, got " +
                               std::to_string(weights.size() - wb));
      }
    }
    if (auto it = record.find("dataset"); it != record.end() && it->is_string())
      datasets.insert(it->get<std::string>());
    TokenRecords& t = tokens[{problem, token}];
    auto [it, inserted] = t.line_of_layer.emplace(static_cast<LayerId>(layer), where.line);
    if (!inserted) {
      return InvalidArgument(where.ToString() + ": problem_id " + std::to_string(problem) +
                             " token_idx " + std::to_string(token) + " layer " +
                             std::to_string(layer) + " repeats line " + std::to_string(it->second));
    }
    t.slice[static_cast<LayerId>(layer)] = {before, static_cast<size_t>(k)};
    layer_set.insert(static_cast<LayerId>(layer));
    ++records;
    return Status::Ok();
  };
  GRACE_RETURN_IF_ERROR(lines(read_record));
  if (records == 0) return InvalidArgument(path + ": no routing records");
  GRACE_RETURN_IF_ERROR(ResolveNumExperts(0, max_id, options, path, &trace));
  trace.info.top_k = top_k;
  trace.info.layer_ids.assign(layer_set.begin(), layer_set.end());
  for (const std::string& d : datasets) {
    trace.info.domain += (trace.info.domain.empty() ? "" : ",") + d;
  }

  const int num_layers = static_cast<int>(layer_set.size());
  int64_t incomplete = 0;
  int64_t incomplete_records = 0;
  std::string examples;
  int64_t current_problem = -1;
  std::vector<const TokenRecords*> step_tokens;
  auto flush = [&]() {
    if (step_tokens.empty()) return;
    TraceStep step;
    step.kind = TraceKind::kTokens;
    step.tokens.num_tokens = static_cast<int>(step_tokens.size());
    for (LayerId layer : trace.info.layer_ids) {
      for (const TokenRecords* t : step_tokens) {
        auto [offset, count] = t->slice.at(layer);
        step.tokens.expert_ids.insert(step.tokens.expert_ids.end(), ids.begin() + offset,
                                      ids.begin() + offset + count);
        if (has_weights) {
          step.tokens.gate_weights.insert(step.tokens.gate_weights.end(), weights.begin() + offset,
                                          weights.begin() + offset + count);
        }
      }
    }
    trace.steps.push_back(std::move(step));
    step_tokens.clear();
  };
  for (const auto& [key, t] : tokens) {
    if (key.first != current_problem) {
      flush();
      current_problem = key.first;
    }
    if (static_cast<int>(t.line_of_layer.size()) == num_layers) {
      step_tokens.push_back(&t);
      continue;
    }
    ++incomplete;
    incomplete_records += static_cast<int64_t>(t.line_of_layer.size());
    if (incomplete <= 5) {
      examples += (incomplete > 1 ? "; " : "") + std::string("problem_id ") +
                  std::to_string(key.first) + " token_idx " + std::to_string(key.second) + " has " +
                  std::to_string(t.line_of_layer.size()) + " (line " +
                  std::to_string(t.line_of_layer.begin()->second) + ")";
    }
  }
  flush();
  if (incomplete > 0) {
    trace.dropped.push_back({incomplete, path + ": " + std::to_string(incomplete) + " of " +
                                             std::to_string(tokens.size()) + " tokens (" +
                                             std::to_string(incomplete_records) +
                                             " records) lack some of the " +
                                             std::to_string(num_layers) + " layers: " + examples +
                                             (incomplete > 5 ? "; ..." : "")});
  }
  trace.notes.push_back(path + ": " + std::to_string(tokens.size()) + " distinct tokens, " +
                        std::to_string(tokens.size() - incomplete) + " with all " +
                        std::to_string(num_layers) + " layers");
  if (trace.steps.empty()) return InvalidArgument(path + ": no token has all its layers");
  return trace;
}

}  // namespace grace
