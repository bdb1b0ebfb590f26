// The live figures (`gracectl bench live`): graced and N grace-agent processes (G CPU ranks
// each) on loopback replay a token-level trace in a loop while graced re-places experts online
// (policy grace or eplb) or serves a pinned placement, and the traffic the agents really send is
// compared with what the cost model predicts for the placement in force.
//
// Over the second half of the run (graced's cumulative counters, GET /api/v1/traffic, read at
// the half and at the end):
//   measured: remote sends per token (distinct GPUs other than the home one, per token and
//             layer), cross-node sends per token (distinct other nodes), imbalance (max / mean
//             of the (token, expert) pairs each rank computed);
//   modeled:  the same three for the final placement, by the exact cost model on the trace's
//             tokens (policy/cost_model.h) with the routing the agents use (locality tiers,
//             weights from the trace's per-expert loads);
// plus the migrations over the run and the final placement. The agents run a small hidden size
// (the figures are about routing, not FFN speed), so N x G ranks fit a laptop.
//
//   GRACE_ASSIGN_OR_RETURN(nlohmann::json figures, RunLiveBench(options));
//
// Blocking; starts and stops its own processes (killed on every error path).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "core/topology.h"

namespace grace {

struct LiveBenchOptions {
  std::vector<std::string> traces;  // any token-level trace ImportTraces reads
  Topology topology{.nodes = 2, .gpus_per_node = 4, .slots_per_gpu = 8};
  std::string policy = "grace";  // grace | eplb | pinned
  std::string placement_file;    // pinned: grace's placement JSON (`gracectl plan -o`)
  double seconds = 120;
  double steps_per_second = 20;
  double interval_s = 2;  // graced's control interval
  // graced's horizon and per-migration byte budget. The replayed trace is stationary and its
  // steps are small (tens of tokens), so a change pays only over a long horizon; a real
  // serving step carries thousands of tokens and pays for the same copies in far fewer steps.
  int horizon_intervals = 5000;
  double byte_budget_mb = 4096;
  int hidden = 2048;  // the model graced plans for (its copy costs)
  int expert_ffn = 1408;
  std::string work_dir;       // default: a fresh temp dir, removed afterwards
  std::string agent_binary;   // default FindAgentBinary()
  std::string graced_binary;  // default FindGracedBinary()
  bool progress = true;       // a line on stderr every few seconds
};

StatusOr<nlohmann::json> RunLiveBench(const LiveBenchOptions& options);

// graced next to the running executable's build tree: $GRACE_GRACED_BINARY, else
// <exe dir>/../daemon/graced when it exists, else <exe dir>/graced (installed side by side).
std::string FindGracedBinary();

}  // namespace grace
