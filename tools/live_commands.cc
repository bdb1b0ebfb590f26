// gracectl bench live: graced and grace-agents on loopback replaying a token trace; measured
// traffic against the cost model for the placement in force (bench/live_bench.h).
#include <cstdio>
#include <iostream>

#include "bench/live_bench.h"
#include "tools/commands.h"

namespace grace::tools {

void AddLiveCommands(CLI::App& /*app*/, CLI::App& bench) {
  struct Flags {
    bool json = false;
    LiveBenchOptions options;
  };
  auto flags = std::make_shared<Flags>();
  LiveBenchOptions& o = flags->options;
  CLI::App* cmd = bench.add_subcommand(
      "live",
      "graced + N agents (G CPU ranks each) on loopback replay a token trace; measured traffic "
      "over the run's second half against the cost model");
  cmd->add_option("--trace", o.traces,
                  "token-level trace files (vLLM JSONL, routing JSONL, native)")
      ->required();
  cmd->add_option("--nodes", o.topology.nodes, "nodes (one agent each)")->capture_default_str();
  cmd->add_option("--gpus-per-node", o.topology.gpus_per_node, "CPU ranks per agent")
      ->capture_default_str();
  cmd->add_option("--slots-per-gpu", o.topology.slots_per_gpu, "expert slots per rank")
      ->capture_default_str();
  cmd->add_option("--inter-node-gbps", o.topology.inter_node_gbps, "NIC bandwidth graced plans for")
      ->capture_default_str();
  cmd->add_option("--policy", o.policy, "grace, eplb (graced re-places) or pinned (--placement)")
      ->capture_default_str();
  cmd->add_option("--placement", o.placement_file, "pinned: placement JSON (gracectl plan -o)");
  cmd->add_option("--seconds", o.seconds, "length of the run")->capture_default_str();
  cmd->add_option("--steps-per-second", o.steps_per_second, "replay pacing")->capture_default_str();
  cmd->add_option("--interval", o.interval_s, "graced's control interval, s")
      ->capture_default_str();
  cmd->add_option("--horizon-intervals", o.horizon_intervals, "graced's horizon, intervals")
      ->capture_default_str();
  cmd->add_option("--byte-budget-mb", o.byte_budget_mb, "graced's bytes per migration, MB")
      ->capture_default_str();
  cmd->add_option("--hidden", o.hidden, "hidden size of the model graced plans for")
      ->capture_default_str();
  cmd->add_option("--expert-ffn", o.expert_ffn, "expert FFN size of that model")
      ->capture_default_str();
  cmd->add_option("--work-dir", o.work_dir, "keep the run's configs, logs and state here");
  cmd->add_flag("--json", flags->json, "print one JSON object");
  cmd->callback([flags] {
    auto result = RunLiveBench(flags->options);
    if (!result.ok()) {
      std::cerr << "gracectl bench live: " << result.status().ToString() << "\n";
      throw CommandExit{result.status().code() == StatusCode::kInvalidArgument ? 2 : 1};
    }
    const nlohmann::json& j = *result;
    if (flags->json) {
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::printf("%-10s %12s %12s %10s\n", "", "remote/tok", "xnode/tok", "imbalance");
    for (const char* what : {"measured", "modeled"}) {
      const nlohmann::json& m = j[what];
      std::printf("%-10s %12.3f %12.3f %10.3f\n", what, m["remote_sends_per_token"].get<double>(),
                  m["cross_node_sends_per_token"].get<double>(), m["imbalance"].get<double>());
    }
    std::printf("migrations %d (second half %d), final epoch %d\n", j["migrations"].get<int>(),
                j["migrations_in_second_half"].get<int>(), j["epoch"].get<int>());
  });
}

}  // namespace grace::tools
