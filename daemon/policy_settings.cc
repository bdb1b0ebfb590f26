#include "daemon/policy_settings.h"

#include <sstream>

namespace grace {

const std::vector<PolicyFieldSpec>& PolicyFields() {
  static const std::vector<PolicyFieldSpec> fields = {
      {"forecast_model",
       "string",
       0,
       0,
       {"auto", "ewma", "holt", "ar", "last_value"},
       "load forecaster; auto picks per series by rolling backtest error"},
      {"interval_s", "number", 0.1, 3600, {}, "control-loop period in seconds"},
      {"horizon_intervals", "integer", 1, 10000, {}, "intervals the forecast gain is summed over"},
      {"min_gain_ms", "number", 0, 1e9, {}, "net modeled gain a migration must clear"},
      {"cooldown_s", "number", 0, 86400, {}, "minimum seconds between two migrations"},
      {"max_replicas_per_expert", "integer", 1, 1024, {}, "slot budget: replicas of one expert"},
      {"byte_budget_mb", "number", 0, 1e7, {}, "megabytes one migration may move"},
      {"migration_fixed_cost_ms", "number", 0, 1e6, {}, "fixed cost charged per migration"},
      {"planner",
       "string",
       0,
       0,
       {"grace", "eplb"},
       "placement policy of re-plans: grace (affinity grouping, replication, locality) or eplb "
       "(load balance only, the baseline)"},
  };
  return fields;
}

nlohmann::json PolicySettings::ToJson() const {
  return {{"forecast_model", forecast_model},
          {"interval_s", interval_s},
          {"horizon_intervals", horizon_intervals},
          {"min_gain_ms", min_gain_ms},
          {"cooldown_s", cooldown_s},
          {"max_replicas_per_expert", max_replicas_per_expert},
          {"byte_budget_mb", byte_budget_mb},
          {"migration_fixed_cost_ms", migration_fixed_cost_ms},
          {"planner", planner}};
}

namespace {

Status CheckField(const PolicyFieldSpec& spec, const nlohmann::json& v) {
  const std::string where = "policy." + spec.name + ": ";
  if (spec.type == "string") {
    if (!v.is_string()) return InvalidArgument(where + "expected a string");
    for (const std::string& a : spec.allowed) {
      if (v.get<std::string>() == a) return Status::Ok();
    }
    std::string list;
    for (const std::string& a : spec.allowed) list += (list.empty() ? "" : ", ") + a;
    return InvalidArgument(where + "'" + v.get<std::string>() + "' is not one of " + list);
  }
  if (spec.type == "integer" && !v.is_number_integer()) {
    return InvalidArgument(where + "expected an integer");
  }
  if (!v.is_number()) return InvalidArgument(where + "expected a number");
  const double x = v.get<double>();
  if (!(x >= spec.min && x <= spec.max)) {
    std::ostringstream msg;
    msg << where << x << " is out of range; allowed range [" << spec.min << ", " << spec.max << "]";
    return InvalidArgument(msg.str());
  }
  return Status::Ok();
}

}  // namespace

StatusOr<PolicySettings> ApplyPolicyPatch(const PolicySettings& current,
                                          const nlohmann::json& patch) {
  if (!patch.is_object()) return InvalidArgument("policy: expected a JSON object");
  for (const auto& [key, value] : patch.items()) {
    const PolicyFieldSpec* spec = nullptr;
    for (const PolicyFieldSpec& f : PolicyFields()) {
      if (f.name == key) spec = &f;
    }
    if (spec == nullptr) return InvalidArgument("policy." + key + ": unknown field");
    GRACE_RETURN_IF_ERROR(CheckField(*spec, value));
  }
  PolicySettings s = current;
  s.forecast_model = patch.value("forecast_model", s.forecast_model);
  s.interval_s = patch.value("interval_s", s.interval_s);
  s.horizon_intervals = patch.value("horizon_intervals", s.horizon_intervals);
  s.min_gain_ms = patch.value("min_gain_ms", s.min_gain_ms);
  s.cooldown_s = patch.value("cooldown_s", s.cooldown_s);
  s.max_replicas_per_expert = patch.value("max_replicas_per_expert", s.max_replicas_per_expert);
  s.byte_budget_mb = patch.value("byte_budget_mb", s.byte_budget_mb);
  s.migration_fixed_cost_ms = patch.value("migration_fixed_cost_ms", s.migration_fixed_cost_ms);
  s.planner = patch.value("planner", s.planner);
  return s;
}

}  // namespace grace
