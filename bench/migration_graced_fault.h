// The fault cases that need the real daemon (bench/migration_bench.h, docs/protocol.md "Epochs"):
// graced SIGKILLed between two COMMIT sends and restarted on the same history; and expert weights
// corrupted in flight on the migration mesh, which graced must abort and count.
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

// The integrity case: graced and 4 agents, rank 1's side of the migration mesh to rank 0 behind a
// ByteTamperProxy (tests/testing/byte_tamper_proxy.h) that changes one byte of the first expert
// chunk rank 0 sends rank 1. Rank 1's digest check fails, it sends no READY but an ABORT with
// cause weight_integrity, graced aborts the migration everywhere and counts it; no rank serves
// the prepared epoch, and the next migration (untouched) switches.
inline constexpr const char* kWeightsCorruptedInFlight = "weights_corrupted_in_flight";

// As every fault case, plus tampered (the proxy changed the byte), integrity_failures (graced's
// grace_migration_integrity_failures_total), graced_log_lines (its log lines naming it),
// agent_outcomes, epoch_prepared and prepared_epoch_served.
StatusOr<nlohmann::json> RunWeightsCorruptedInFlight(const MigrationBenchOptions& options,
                                                     const Topology& topo);

}  // namespace grace
