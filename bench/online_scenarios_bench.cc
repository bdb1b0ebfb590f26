// online_scenarios_bench: runs every shipped scenario of config/scenarios (or the scenario files
// given as arguments) through the online simulator and prints the figures:
//   static / online / periodic EPLB / oracle totals (migrations included), the share of the
//   oracle's gain online captures, (static - online) / (static - oracle), and the forecast's
//   weighted MAPE against the last-value forecast's.
// Targets, for scenarios where the oracle beats static by at least 3%: capture >= 0.6, online
// within 10% of the oracle and below periodic EPLB; everywhere: forecast error below last value.
// Exit status 1 when a target is missed (the figures are reported either way).
//
//   build/bench/online_scenarios_bench [--verbose] [scenario.toml ...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "policy/online_simulator.h"
#include "tools/scenario.h"

int main(int argc, char** argv) {
  std::vector<std::string> files;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--verbose") {
      verbose = true;
    } else {
      files.push_back(argv[i]);
    }
  }
  if (files.empty()) {
    const std::filesystem::path dir = std::filesystem::path(GRACE_SOURCE_DIR) / "config/scenarios";
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() == ".toml") files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
  }
  std::printf("%-32s %11s %11s %11s %11s %7s %7s %6s %6s %8s %8s  %s\n", "scenario", "static_ms",
              "online_ms", "eplb_ms", "oracle_ms", "gain%", "capture", "migr", "GB", "mape",
              "lv_mape", "verdict");
  int missed = 0;
  for (const std::string& file : files) {
    const auto t0 = std::chrono::steady_clock::now();
    grace::StatusOr<grace::tools::Scenario> scenario = grace::tools::LoadScenario(file);
    if (!scenario.ok()) {
      std::printf("%s: %s\n", file.c_str(), scenario.status().ToString().c_str());
      ++missed;
      continue;
    }
    grace::StatusOr<grace::WorkloadStream> stream =
        grace::WorkloadStream::Create(std::move(scenario->phases));
    if (!stream.ok()) {
      std::printf("%s: %s\n", file.c_str(), stream.status().ToString().c_str());
      ++missed;
      continue;
    }
    grace::StatusOr<grace::OnlineSimulationReport> report = grace::SimulateOnline(
        std::move(*stream), scenario->topology, scenario->params, scenario->options);
    if (!report.ok()) {
      std::printf("%s: %s\n", file.c_str(), report.status().ToString().c_str());
      ++missed;
      continue;
    }
    const grace::OnlineSimulationReport& r = *report;
    const double s = r.static_placement.total_ms, on = r.online.total_ms,
                 ep = r.periodic_eplb.total_ms, orc = r.oracle.total_ms;
    const double gain = (s - orc) / s;
    const double capture = s - orc > 0 ? (s - on) / (s - orc) : 0.0;
    std::string verdict;
    if (r.forecast_mape >= r.last_value_mape) verdict += " forecast>=last_value";
    if (gain >= 0.03) {
      if (capture < 0.6) verdict += " capture<0.6";
      if (on > 1.10 * orc) verdict += " online>1.1*oracle";
      if (on >= ep) verdict += " online>=eplb";
    }
    if (!verdict.empty()) ++missed;
    if (verdict.empty()) verdict = gain >= 0.03 ? " met" : " met (oracle gain < 3%: forecast only)";
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-32s %11.1f %11.1f %11.1f %11.1f %7.1f %7.2f %6d %6.2f %8.4f %8.4f %s (%.1fs)\n",
                std::filesystem::path(file).stem().string().c_str(), s, on, ep, orc, 100 * gain,
                capture, r.online.migrations, r.online.bytes_moved / 1e9, r.forecast_mape,
                r.last_value_mape, verdict.c_str(), secs);
    if (verbose) {
      // Serving time per phase of each strategy, and online's migrations.
      for (const grace::PolicyResult* p :
           {&r.static_placement, &r.online, &r.periodic_eplb, &r.oracle}) {
        std::printf("    %-14s migration %9.1f ms, serving per phase:", p->name.c_str(),
                    p->migration_ms);
        for (size_t i = 0; i < r.phase_start_step.size(); ++i) {
          const size_t end =
              i + 1 < r.phase_start_step.size() ? r.phase_start_step[i + 1] : p->step_ms.size();
          double ms = 0;
          for (size_t t = r.phase_start_step[i]; t < end; ++t) ms += p->step_ms[t];
          std::printf(" %10.1f", ms);
        }
        std::printf("\n");
      }
      for (const grace::DecisionRecord& d : r.decisions) {
        if (d.bytes == 0) continue;
        std::printf(
            "    step %4lld layer %2d %-14s gain %9.1f (realised %9.1f) cost %7.1f ms %6.1f MB: "
            "%.120s\n",
            static_cast<long long>(d.step), d.layer_index, grace::ActionKindName(d.kind),
            d.predicted_gain_ms, d.realised_gain_ms, d.migration_ms, d.bytes / 1e6,
            d.reason.c_str());
      }
    }
    std::fflush(stdout);
  }
  return missed == 0 ? 0 : 1;
}
