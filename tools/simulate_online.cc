// gracectl simulate --online --scenario FILE [--json]: the four strategies of
// policy/online_simulator.h on a scenario (tools/scenario.h), with totals, migrations, bytes
// moved and the forecast error.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "policy/online_simulator.h"
#include "tools/commands.h"
#include "tools/scenario.h"

namespace grace::tools {
namespace {

// Serving time of each phase (migrations excluded).
std::vector<double> PhaseMs(const PolicyResult& r, const std::vector<int>& phase_start) {
  std::vector<double> out(phase_start.size(), 0.0);
  for (size_t p = 0; p < phase_start.size(); ++p) {
    const size_t end = p + 1 < phase_start.size() ? phase_start[p + 1] : r.step_ms.size();
    for (size_t t = phase_start[p]; t < end && t < r.step_ms.size(); ++t) out[p] += r.step_ms[t];
  }
  return out;
}

nlohmann::json PolicyJson(const PolicyResult& r, const std::vector<int>& phase_start) {
  return {{"total_ms", r.total_ms},       {"migration_ms", r.migration_ms},
          {"migrations", r.migrations},   {"experts_moved", r.experts_moved},
          {"bytes_moved", r.bytes_moved}, {"phase_serving_ms", PhaseMs(r, phase_start)},
          {"step_ms", r.step_ms}};
}

}  // namespace

int RunOnlineSimulate(const std::string& scenario_path, bool json) {
  StatusOr<Scenario> scenario = LoadScenario(scenario_path);
  if (!scenario.ok()) {
    std::cerr << "gracectl simulate --online: " << scenario.status().ToString() << "\n";
    return 2;
  }
  StatusOr<WorkloadStream> stream = WorkloadStream::Create(std::move(scenario->phases));
  if (!stream.ok()) {
    std::cerr << "gracectl simulate --online: " << scenario_path << ": "
              << stream.status().ToString() << "\n";
    return 2;
  }
  // Progress on stderr (stdout stays the report): a line every few seconds of a long run.
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  Clock::time_point last_line = start;
  auto progress = [&](const OnlineSimulationProgress& p) {
    const Clock::time_point now = Clock::now();
    if (now - last_line < std::chrono::seconds(5)) return;
    last_line = now;
    std::fprintf(stderr,
                 "step %d/%d (phase %d/%d): online %.1f ms, static %.1f ms, %d migration(s), "
                 "%.0f s\n",
                 p.step, p.total_steps, p.phase + 1, p.phases, p.online_ms, p.static_ms,
                 p.migrations, std::chrono::duration<double>(now - start).count());
  };
  StatusOr<OnlineSimulationReport> report = SimulateOnline(
      std::move(*stream), scenario->topology, scenario->params, scenario->options, progress);
  if (!report.ok()) {
    std::cerr << "gracectl simulate --online: " << scenario_path << ": "
              << report.status().ToString() << "\n";
    return 2;
  }
  const OnlineSimulationReport& r = *report;
  if (json) {
    nlohmann::json out;
    out["scenario"] = scenario_path;
    out["steps"] = r.steps;
    out["policies"]["static"] = PolicyJson(r.static_placement, r.phase_start_step);
    out["policies"]["online"] = PolicyJson(r.online, r.phase_start_step);
    out["policies"]["periodic_eplb"] = PolicyJson(r.periodic_eplb, r.phase_start_step);
    out["policies"]["oracle"] = PolicyJson(r.oracle, r.phase_start_step);
    out["capture_ratio"] = OnlineCapture(r);
    out["oracle_move_ms_if_paid"] = r.oracle_move_ms;
    out["forecast"] = {{"mape", r.forecast_mape}, {"last_value_mape", r.last_value_mape}};
    out["detector_alarms"] = r.detector_alarms;
    out["phase_start_step"] = r.phase_start_step;
    nlohmann::json decisions = nlohmann::json::array();
    for (const DecisionRecord& d : r.decisions) {
      decisions.push_back({{"step", d.step},
                           {"layer_index", d.layer_index},
                           {"action", ActionKindName(d.kind)},
                           {"reason", d.reason},
                           {"predicted_gain_ms", d.predicted_gain_ms},
                           {"realised_gain_ms", d.realised_gain_ms},
                           {"migration_ms", d.migration_ms},
                           {"bytes", d.bytes}});
    }
    out["decisions"] = std::move(decisions);
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("scenario %s: %d steps, %zu phases, %s\n", scenario_path.c_str(), r.steps,
              r.phase_start_step.size(), scenario->topology.ToString().c_str());
  std::printf("  %-14s %12s %10s %12s %14s   %s\n", "policy", "total_ms", "migrations", "GB_moved",
              "migration_ms", "serving ms per phase");
  for (const PolicyResult* p : {&r.static_placement, &r.online, &r.periodic_eplb, &r.oracle}) {
    std::printf("  %-14s %12.1f %10d %12.2f %14.1f  ", p->name.c_str(), p->total_ms, p->migrations,
                p->bytes_moved / 1e9, p->migration_ms);
    for (double ms : PhaseMs(*p, r.phase_start_step)) std::printf(" %10.1f", ms);
    std::printf("\n");
  }
  std::printf(
      "  oracle gain over static %.1f%%, online captures %.0f%% of it\n",
      100.0 * (r.static_placement.total_ms - r.oracle.total_ms) / r.static_placement.total_ms,
      100.0 * OnlineCapture(r));
  std::printf("  the oracle's own moves would cost %.1f ms had it paid for them\n",
              r.oracle_move_ms);
  std::printf("  forecast weighted MAPE %.4f (last value %.4f); load-shift alarms %lld\n",
              r.forecast_mape, r.last_value_mape, static_cast<long long>(r.detector_alarms));
  int shown = 0;
  for (const DecisionRecord& d : r.decisions) {
    if (d.bytes == 0) continue;
    if (shown++ == 12) {
      std::printf("  ... (--json lists every decision)\n");
      break;
    }
    std::printf(
        "  step %4lld layer %2d %-13s gain %8.1f ms (realised %8.1f) cost %6.1f ms "
        "%7.1f MB: %s\n",
        static_cast<long long>(d.step), d.layer_index, ActionKindName(d.kind), d.predicted_gain_ms,
        d.realised_gain_ms, d.migration_ms, d.bytes / 1e6, d.reason.c_str());
  }
  return 0;
}

}  // namespace grace::tools
