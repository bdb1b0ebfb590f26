// The live-migration figures (`gracectl bench migration`): 4 grace-agent processes on loopback
// (2 nodes x 2 ranks) replay generated tokens through the gate, paced, with a test daemon
// (bench/migration_daemon.h) re-placing the experts every M steps (random swaps and replica
// moves between valid placements). Three runs, each checked token by token against the dense
// reference (agent/dense_reference.h):
//   baseline:  no migration, for the p99 step time;
//   migration: a re-placement every M steps: max step time over the baseline p99, tokens lost
//              or duplicated, per-step checksum mismatches, steps whose ranks served different
//              epochs, bytes moved vs PlanMigration's minimum, PREPARE -> switch times;
//   sigkill:   one agent SIGKILLed while a (rate-limited) transfer runs: the migration must
//              abort, the others serve on with correct output once the agent is restarted, the
//              restarted agent rejoins at the current epoch and takes part in the next migration.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace grace {

struct MigrationBenchOptions {
  std::string agent_binary;  // default FindAgentBinary()
  std::string work_dir;      // default a fresh temp dir, removed afterwards
  int experts = 16, top_k = 2, hidden = 64, ffn = 128, layers = 2;
  int slots_per_rank = 6;
  int tokens_per_rank = 32;
  int steps = 240;
  double steps_per_second = 40;
  int every_steps = 40;  // M: a re-placement every M steps
  int moves_per_layer = 2;
  double max_bytes_per_s = 4e6;  // per agent, in the migration run ([migration].max_bytes_per_s)
  uint32_t seed = 1;
  bool baseline = true;  // false: skip the no-migration run (tests; no step-time figures)
  bool sigkill = true;
  int kill_rank = 2;  // the agent the SIGKILL run kills
  std::chrono::milliseconds timeout{120000};
};

StatusOr<nlohmann::json> RunMigrationBench(const MigrationBenchOptions& options);

}  // namespace grace
