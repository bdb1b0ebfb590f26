// The live-migration figures (`gracectl bench migration`): grace-agent processes on loopback
// (2 nodes x 2 ranks) replay generated tokens through the gate, paced, with a test daemon
// (bench/migration_daemon.h) re-placing the experts (random swaps and replica moves between
// valid placements). Every run is checked token by token against the dense reference
// (agent/dense_reference.h), and every rank's (step, epoch) against the others':
//   migration: 2 agent processes of 2 ranks (no more processes than this machine's cores), a
//              re-placement every M steps, so steady windows and migration windows (PREPARE to
//              one step past the switch) interleave in one run: p99 step time during
//              migrations over p99 in the steady windows, the switch step over the median
//              steady step (median over the migrations; the worst beside it), max step over
//              the steady p99, tokens lost or duplicated, checksum
//              mismatches, steps whose ranks served different epochs, bytes moved vs
//              PlanMigration's minimum, PREPARE -> switch times;
//   baseline:  (optional) the same replay with no migration;
//   sigkill:   one of 4 agents SIGKILLed while a (rate-limited) transfer runs: the migration
//              must abort, the restarted agent rejoins at the current epoch and takes part in
//              the next migration;
//   faults:    every case of MigrationFaultCases(), each {case, outcome, mixed_epoch_steps,
//              tokens_lost, checksum_mismatches, ...}.
// Timings on a shared machine are noisy: read the ratios, not the milliseconds.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "tls/tls_setting.h"

namespace grace {

struct MigrationBenchOptions {
  std::string agent_binary;   // default FindAgentBinary()
  std::string graced_binary;  // the fault case that kills graced; default FindGracedBinary()
  std::string work_dir;       // default a fresh temp dir, removed afterwards
  int experts = 16, top_k = 2, hidden = 64, ffn = 128, layers = 2;
  int slots_per_rank = 6;
  int tokens_per_rank = 32;
  int steps = 960;
  double steps_per_second = 40;
  int every_steps = 40;  // M: a re-placement every M steps
  int moves_per_layer = 2;
  double max_bytes_per_s = 4e6;  // per agent, in the migration run ([migration].max_bytes_per_s)
  uint32_t seed = 1;
  bool baseline = false;  // also a separate no-migration run (its p99 in "baseline")
  bool sigkill = true;
  bool faults = true;       // run every fault case (MigrationFaultCases) into "faults"
  int ranks_per_agent = 2;  // the migration run: 2 agent processes of 2 ranks each
  int kill_rank = 2;        // the agent the SIGKILL run kills
  // [transport].connect_timeout_ms of the agents: how long a re-formed mesh waits for a
  // restarted peer, and a cancelled copy for its mesh rendezvous.
  int connect_timeout_ms = 20000;
  // [migration].spare_slots of the agents; negative: their default (slots_per_rank).
  int spare_slots = -1;
  // The agent channel's transport, on the daemon and every agent.toml ([daemon] tls): the
  // fault cases set "off", their FrameProxy reads the frames.
  AgentChannelTls agent_tls = AgentChannelTls::kPsk;
  // [agent].backend of every agent. "cuda": an agent process drives devices 0 to
  // ranks_per_agent - 1 (ranks_per_agent 1 puts every rank on device 0), migrations stage into
  // spare device slots, and outputs are checked at bf16 tolerance: per token the error's L2
  // within 3e-2 of the MoE layers' own contribution (x_out - x_in), as the CUDA tests do.
  std::string backend = "cpu";
  std::chrono::milliseconds timeout{120000};
};

StatusOr<nlohmann::json> RunMigrationBench(const MigrationBenchOptions& options);

// The epoch protocol's fault cases (docs/protocol.md, "Epochs"), each run on 4 agents behind a
// frame proxy (tests/testing/frame_proxy.h) with one migration and the fault injected, then one
// more migration (graced_sigkilled_between_commits with the real graced, the others with the
// test daemon): {case, outcome ("committed" or "aborted"), mixed_epoch_steps, tokens_lost,
// checksum_mismatches, abort_reason, unconfirmed, epochs_served, next_migration_switched}.
std::vector<std::string> MigrationFaultCases();
StatusOr<nlohmann::json> RunMigrationFaultCase(const MigrationBenchOptions& options,
                                               const std::string& name);

}  // namespace grace
