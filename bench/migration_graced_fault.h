// The fault case that needs the real daemon: graced SIGKILLed between two COMMIT sends and
// restarted on the same history (bench/migration_bench.h, docs/protocol.md "Epochs").
//
// graced (the real process, its SQLite history in a scratch directory) and 4 grace-agent
// processes behind a FrameProxy (tests/testing/frame_proxy.h). The migration is an operator's
// placement (POST /api/v1/placement), so it starts at once and moves what the case chose. The
// proxy holds COMMIT for agents 2 and 3; once agents 0 and 1 have theirs, graced is SIGKILLed
// and the held COMMITs die with their connections. The restarted graced must serve the epoch
// the ranks agreed on in band, with no step mixing epochs, and its next migration must switch.
//
//   GRACE_ASSIGN_OR_RETURN(nlohmann::json j, RunGracedKilledBetweenCommits(options, topo));
//
// Blocking; starts and kills its own processes.
#pragma once

#include <nlohmann/json.hpp>

#include "bench/migration_bench.h"
#include "core/status.h"
#include "core/topology.h"

namespace grace {

// The case's name in MigrationFaultCases().
inline constexpr const char* kGracedKilledBetweenCommits = "graced_sigkilled_between_commits";

// {case, outcome, mixed_epoch_steps, tokens_lost, checksum_mismatches, epochs_served,
//  next_migration_switched, ...} as every fault case; plus graced's epoch before the kill and
// after the restart.
StatusOr<nlohmann::json> RunGracedKilledBetweenCommits(const MigrationBenchOptions& options,
                                                       const Topology& topo);

}  // namespace grace
