// Scenario: a drifting-workload experiment for `gracectl simulate --online`, read from TOML.
//
//   [topology]                 # core/topology.h; bandwidths in Gb/s
//   nodes = 2
//   gpus_per_node = 4
//   slots_per_gpu = 10
//   inter_node_gbps = 25
//
//   [model]                    # optional: sizes for bytes per token, compute per (token,
//   hidden = 2048              # expert) and expert weight bytes (3 x hidden x expert_ffn x 2,
//   expert_ffn = 1024          # bf16). Defaults: CostParams (hidden 2048, expert_ffn 1408).
//   gpu_tflops = 400           # optional
//
//   [online]                   # optional: the decision's and the baselines' knobs
//   horizon_steps = 64         # DecisionOptions / OnlineSimulationOptions defaults apply
//   decide_every = 4
//   cooldown_steps = 8
//   min_net_gain_ms = 1.0
//   gain_to_cost_ratio = 1.5
//   min_relative_gain = 0.01
//   fixed_cost_ms = 1.0
//   byte_budget_mb = 0         # per interval; 0: an eighth of all layers' experts, >= one layer's
//   minimal_replan_evaluations = 0  # per move of the incremental search; 0: max(32, experts / 3)
//   eplb_period = 100
//   eplb_window = 100
//
//   [[phase]]                  # one or more, served in order
//   source =
//   "../../../shared/traces/real/olmoe-and-mixtral-domain-counts/olmoe__expert_counts__arxiv.json"
//   steps = 150
//   tokens_per_step = 4096
//   noise = 0.05               # optional: per-step log-normal jitter of count-only sources
//   seed = 1                   # optional
//   top_k = 8                  # optional: for sources that do not record it
//   first_token = 0            # optional: token-level sources replay the window
//   last_token = 2000          # [first_token, last_token) (0: to the end), wrapping around
//
// A source path is relative to the scenario file and may be any file ImportTraces reads.
// Unknown tables and keys are errors naming the key and line.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "core/topology.h"
#include "policy/cost_model.h"
#include "policy/online_simulator.h"
#include "policy/online_workload.h"

namespace grace::tools {

struct Scenario {
  std::string path;
  Topology topology;
  CostParams params;
  OnlineSimulationOptions options;
  std::vector<WorkloadPhase> phases;  // traces imported
};

// Reads the scenario and imports every phase's source.
StatusOr<Scenario> LoadScenario(const std::string& path);
// Parses scenario text; sources are resolved against `base_dir` and imported.
StatusOr<Scenario> ParseScenario(const std::string& text, const std::string& source_name,
                                 const std::string& base_dir);

}  // namespace grace::tools
