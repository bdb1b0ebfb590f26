// The data path's figures (issue: "Figures to reach"), measured on this machine:
//   ffn_vs_gemm            CPU grouped expert FFN throughput / a plain Eigen GEMM of the same
//                          total shape (target >= 0.6)
//   route_decisions_per_s  replica selections per second on one core (target >= 5e7)
//   a2a_bytes_per_s        TCP all-to-all-v on loopback, 4 ranks, aggregate (target 1e9)
//   replay                 4 grace-agent processes replaying the Qwen1.5-MoE trace: per-step
//                          phase breakdown and `lossless` (matched the dense reference)
// Run by `gracectl bench datapath [--json]`. Timings are reported, never asserted.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace grace {

struct DatapathBenchOptions {
  // Expert FFN and routing shape (the example).
  int experts = 64;
  int top_k = 8;
  int hidden = 1024;
  int ffn = 512;
  int tokens_per_rank = 512;
  int repeats = 3;
  // All-to-all-v.
  int a2a_ranks = 4;
  size_t a2a_bytes_per_peer = 4 << 20;
  int a2a_rounds = 8;
  // Replay; empty trace_dir: GRACE_TRACES_DIR, else <source>/../shared/traces/real.
  std::string trace_dir;
  std::string agent_binary;  // empty: FindAgentBinary()
  std::string work_dir;      // empty: a temporary directory
};

StatusOr<nlohmann::json> RunDatapathBench(const DatapathBenchOptions& options);

}  // namespace grace
