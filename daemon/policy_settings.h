// PolicySettings: the knobs of graced's control loop that operators tune at run time over
// PUT /api/v1/policy, with the range each one accepts.
//
// ApplyPolicyPatch checks a JSON object field by field against the ranges below and returns the
// new settings, or a Status naming the field and its allowed range (the REST layer turns it into
// a 400). Plain values; the daemon keeps the current one behind its lock.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace grace {

struct PolicySettings {
  std::string forecast_model =
      "auto";                          // auto (per-series backtest) | ewma | holt | ar | last_value
  double interval_s = 5;               // control-loop period
  int horizon_intervals = 12;          // forecast horizon the gain is summed over
  double min_gain_ms = 1.0;            // act only when net gain over the horizon clears this
  double cooldown_s = 30;              // minimum time between two migrations
  int max_replicas_per_expert = 4;     // slot budget: replicas of one expert
  double byte_budget_mb = 512;         // bytes one migration may move
  double migration_fixed_cost_ms = 5;  // fixed cost charged to every migration
  std::string planner = "grace";       // grace | eplb: the policy re-plans come from

  nlohmann::json ToJson() const;
};

// One accepted field of a policy, with its range, for the OpenAPI document and error messages.
struct PolicyFieldSpec {
  std::string name;
  std::string type;  // "number", "integer" or "string"
  double min = 0;
  double max = 0;
  std::vector<std::string> allowed;  // for strings
  std::string description;
};
const std::vector<PolicyFieldSpec>& PolicyFields();

// Applies the fields present in `patch` to `current`. Unknown fields, wrong types and values out
// of range fail with "policy.<field>: ..." naming the allowed range or values.
StatusOr<PolicySettings> ApplyPolicyPatch(const PolicySettings& current,
                                          const nlohmann::json& patch);

}  // namespace grace
