#include "daemon/policy_restore.h"

#include <map>
#include <optional>

namespace grace {
namespace {

struct FieldHistory {
  std::optional<PolicyChange> newest;         // by any writer
  std::optional<PolicyChange> newest_config;  // recorded from the config file at a start
};

// Every recorded change, newest first, folded per field.
StatusOr<std::map<std::string, FieldHistory>> ReadFieldHistory(HistoryStore& store) {
  std::map<std::string, FieldHistory> fields;
  HistoryQuery q;
  q.limit = 1000;
  for (;;) {
    GRACE_ASSIGN_OR_RETURN(std::vector<PolicyChange> page, store.ListPolicyChanges(q));
    for (PolicyChange& c : page) {
      FieldHistory& f = fields[c.field];
      if (!f.newest) f.newest = c;
      if (c.who == "config" && !f.newest_config) f.newest_config = std::move(c);
    }
    if (page.size() < static_cast<size_t>(q.limit)) return fields;
    q.offset += q.limit;
  }
}

}  // namespace

StatusOr<RestoredPolicy> RestorePolicy(HistoryStore& store, const PolicySettings& from_config,
                                       int64_t now_ms) {
  GRACE_ASSIGN_OR_RETURN(auto fields, ReadFieldHistory(store));
  RestoredPolicy out;
  const nlohmann::json config = from_config.ToJson();
  nlohmann::json patch = nlohmann::json::object();
  for (const auto& [field, value] : config.items()) {
    const std::string text = value.dump();
    const FieldHistory& f = fields[field];
    if (!f.newest_config || f.newest_config->new_value != text) {
      // First start, or graced.toml was edited since the last one: the file is the newest write.
      const std::string before = f.newest ? f.newest->new_value : "";
      GRACE_RETURN_IF_ERROR(store.RecordPolicyChange({now_ms, "config", field, before, text}));
      continue;
    }
    if (!f.newest || f.newest->who == "config" || f.newest->new_value == text) continue;
    const nlohmann::json restored = nlohmann::json::parse(f.newest->new_value, nullptr, false);
    if (restored.is_discarded()) {
      return DataLoss("history: policy change of " + field + " holds '" + f.newest->new_value +
                      "', not a JSON value");
    }
    patch[field] = restored;
    out.overrides.push_back(field + " = " + f.newest->new_value + " (set by " + f.newest->who +
                            " at " + std::to_string(f.newest->time_ms) + " ms; the config says " +
                            text + ")");
  }
  // A value out of today's ranges (the ranges changed since it was set) is an error to name, not
  // a reason to start on something else silently.
  StatusOr<PolicySettings> merged = ApplyPolicyPatch(from_config, patch);
  if (!merged.ok()) {
    return FailedPrecondition(
        "history: the policy set over the API no longer applies: " + merged.status().message() +
        "; set it again over PUT /api/v1/policy or in the config");
  }
  out.policy = *merged;
  const FieldHistory& paused = fields["paused"];
  out.paused = paused.newest && paused.newest->new_value == "true";
  return out;
}

}  // namespace grace
