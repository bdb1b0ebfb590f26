#include "tools/scenario.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/toml_fields.h"
#include "core/trace_file.h"
#include "core/trace_import.h"

namespace grace::tools {
namespace {

Status ParseModel(const toml::table& root, const std::string& source, CostParams* params) {
  const toml::table* tbl = root["model"].as_table();
  if (tbl == nullptr) return Status::Ok();
  TomlFields f(*tbl, source, "model");
  GRACE_RETURN_IF_ERROR(f.RejectUnknown({"hidden", "expert_ffn", "gpu_tflops"}));
  GRACE_RETURN_IF_ERROR(f.Int("hidden", params->hidden_size, 1, 1 << 20, &params->hidden_size));
  GRACE_RETURN_IF_ERROR(
      f.Int("expert_ffn", params->expert_ffn_size, 1, 1 << 20, &params->expert_ffn_size));
  GRACE_RETURN_IF_ERROR(f.Double("gpu_tflops", params->gpu_tflops, 1e-3, 1e6, &params->gpu_tflops));
  return Status::Ok();
}

Status ParseOnline(const toml::table& root, const std::string& source, OnlineSimulationOptions* o) {
  const toml::table* tbl = root["online"].as_table();
  if (tbl == nullptr) return Status::Ok();
  TomlFields f(*tbl, source, "online");
  GRACE_RETURN_IF_ERROR(
      f.RejectUnknown({"horizon_steps", "decide_every", "cooldown_steps", "min_net_gain_ms",
                       "gain_to_cost_ratio", "min_relative_gain", "fixed_cost_ms", "byte_budget_mb",
                       "minimal_replan_evaluations", "eplb_period", "eplb_window"}));
  DecisionOptions& d = o->decision;
  GRACE_RETURN_IF_ERROR(f.Int("horizon_steps", d.horizon_steps, 1, 1 << 20, &d.horizon_steps));
  GRACE_RETURN_IF_ERROR(f.Int("decide_every", o->decide_every, 1, 1 << 20, &o->decide_every));
  GRACE_RETURN_IF_ERROR(f.Int("cooldown_steps", d.cooldown_steps, 0, 1 << 20, &d.cooldown_steps));
  GRACE_RETURN_IF_ERROR(f.Double("min_net_gain_ms", d.min_net_gain_ms, 0, 1e9, &d.min_net_gain_ms));
  GRACE_RETURN_IF_ERROR(
      f.Double("gain_to_cost_ratio", d.gain_to_cost_ratio, 0, 1e6, &d.gain_to_cost_ratio));
  GRACE_RETURN_IF_ERROR(
      f.Double("min_relative_gain", d.min_relative_gain, 0, 1, &d.min_relative_gain));
  GRACE_RETURN_IF_ERROR(f.Double("fixed_cost_ms", d.fixed_cost_ms, 0, 1e9, &d.fixed_cost_ms));
  double budget_mb = 0;
  GRACE_RETURN_IF_ERROR(f.Double("byte_budget_mb", 0, 0, 1e9, &budget_mb));
  d.byte_budget = static_cast<uint64_t>(budget_mb * 1e6);
  GRACE_RETURN_IF_ERROR(f.Int("minimal_replan_evaluations", d.minimal_replan_evaluations, 0,
                              1 << 16, &d.minimal_replan_evaluations));
  GRACE_RETURN_IF_ERROR(f.Int("eplb_period", o->eplb_period, 1, 1 << 20, &o->eplb_period));
  GRACE_RETURN_IF_ERROR(f.Int("eplb_window", o->eplb_window, 1, 1 << 20, &o->eplb_window));
  return Status::Ok();
}

}  // namespace

StatusOr<Scenario> ParseScenario(const std::string& text, const std::string& source_name,
                                 const std::string& base_dir) {
  GRACE_ASSIGN_OR_RETURN(toml::table root, ParseTomlText(text, source_name));
  TomlFields top(root, source_name, "");
  GRACE_RETURN_IF_ERROR(top.RejectUnknown({"topology", "model", "online", "phase"}));
  Scenario scenario;
  scenario.path = source_name;
  GRACE_ASSIGN_OR_RETURN(scenario.topology, ParseTopologyToml(text, source_name));
  GRACE_RETURN_IF_ERROR(scenario.topology.Validate());
  GRACE_RETURN_IF_ERROR(ParseModel(root, source_name, &scenario.params));
  GRACE_RETURN_IF_ERROR(ParseOnline(root, source_name, &scenario.options));

  const toml::array* phases = root["phase"].as_array();
  if (phases == nullptr || phases->empty()) {
    return InvalidArgument(source_name + ": expected at least one [[phase]]");
  }
  for (size_t i = 0; i < phases->size(); ++i) {
    const toml::table* tbl = (*phases)[i].as_table();
    const std::string name = "phase " + std::to_string(i + 1);
    if (tbl == nullptr) return InvalidArgument(source_name + ": " + name + " is not a table");
    TomlFields f(*tbl, source_name, name);
    GRACE_RETURN_IF_ERROR(f.RejectUnknown({"source", "steps", "tokens_per_step", "noise", "seed",
                                           "top_k", "first_token", "last_token"}));
    WorkloadPhase phase;
    std::string source;
    GRACE_RETURN_IF_ERROR(f.String("source", "", &source, /*required=*/true));
    GRACE_RETURN_IF_ERROR(f.Int("steps", 0, 1, 10'000'000, &phase.steps, true));
    GRACE_RETURN_IF_ERROR(f.Int("tokens_per_step", 0, 1, 1 << 24, &phase.tokens_per_step, true));
    GRACE_RETURN_IF_ERROR(f.Double("noise", 0.0, 0.0, 10.0, &phase.noise));
    int64_t seed = static_cast<int64_t>(i) + 1;
    GRACE_RETURN_IF_ERROR(f.Int("seed", seed, 0, INT64_MAX, &seed));
    phase.seed = static_cast<uint64_t>(seed);
    GRACE_RETURN_IF_ERROR(f.Int("top_k", 0, 0, 1024, &phase.top_k));
    GRACE_RETURN_IF_ERROR(f.Int("first_token", int64_t{0}, 0, INT64_MAX, &phase.first_token));
    GRACE_RETURN_IF_ERROR(f.Int("last_token", int64_t{0}, 0, INT64_MAX, &phase.last_token));
    const std::filesystem::path resolved = std::filesystem::path(base_dir) / source;
    StatusOr<Trace> trace = ImportTraces({resolved.lexically_normal().string()});
    if (!trace.ok()) return trace.status().WithContext(f.Where("source"));
    phase.name = source;
    phase.trace = std::move(*trace);
    scenario.phases.push_back(std::move(phase));
  }
  return scenario;
}

namespace {
// A scenario is a few tables of TOML; one this large is not a scenario.
constexpr uint64_t kMaxScenarioBytes = 16 << 20;
}  // namespace

StatusOr<Scenario> LoadScenario(const std::string& path) {
  // Only a regular file, of bounded size: a FIFO or /dev/zero is refused at once, naming it.
  StatusOr<std::string> text = ReadWholeFile(path, kMaxScenarioBytes);
  if (!text.ok()) return text.status().WithContext("scenario");
  const std::string base = std::filesystem::path(path).parent_path().string();
  return ParseScenario(*text, path, base.empty() ? "." : base);
}

}  // namespace grace::tools
