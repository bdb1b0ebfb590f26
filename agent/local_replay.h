// LocalReplay: a whole multi-process replay on this machine, checked against the dense
// reference: writes the weights (safetensors), placement and one agent.toml per rank under a
// work directory, runs one grace-agent process per rank on loopback, then compares every
// token's output with DenseForward on the same weights. Used by the lossless test and by
// `gracectl bench datapath`.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "agent/moe_layer.h"
#include "core/placement.h"
#include "core/topology.h"
#include "kernels/model_shape.h"

namespace grace {

struct LocalReplayOptions {
  std::string agent_binary;
  std::string trace_path;  // native trace (token-level)
  std::string work_dir;    // created; left in place for inspection
  Topology topology;       // one process per rank
  ModelShape shape;        // experts, top_k and layers must match the trace
  Placement placement;     // empty (no layers): DefaultPlacement
  uint64_t weights_seed = 2024;
  uint64_t seed = 99;
  std::chrono::milliseconds timeout{120000};
};

struct LocalReplayResult {
  int64_t tokens = 0;
  int steps = 0;
  double max_abs_error = 0;        // against the dense reference
  double mean_abs_moe_change = 0;  // |final - initial| per element: the check is not vacuous
  bool lossless = false;           // every token present once and within tolerance
  std::string mismatch;            // the first mismatch, when not lossless
  StepTimes mean_rank_times;       // seconds per rank over the replay, averaged over ranks
  double wall_s = 0;               // slowest rank's replay time
  uint64_t remote_bytes_sent = 0;  // all ranks
};

StatusOr<LocalReplayResult> RunLocalReplay(const LocalReplayOptions& options);

}  // namespace grace
