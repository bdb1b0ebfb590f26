// EpochAgreement: how the ranks agree, in band, on the epoch of every step, so that no step
// ever mixes two epochs (docs/protocol.md, "Epochs").
//
// Before each step every rank sends every other rank, over the data-path mesh, an EpochClaim:
// the epoch it served its previous step with, and the newest committed epoch it knows of with
// that epoch's switch step (from COMMIT, from a Welcome, or from an earlier claim). Every rank
// gets the same claims, so AgreedEpoch() gives the same answer on every rank: the highest
// epoch that some rank serves, or that some rank knows committed with a switch step at or
// before this step. A COMMIT that reaches one agent late, or never, is thus carried to it in
// band; a COMMIT that reaches no agent by its switch step moves the switch to the first step
// at which one of them has it, on every rank alike.
//
// A committed epoch is never announced before every rank has staged it (graced commits only
// after every READY), so a rank asked to switch always holds the epoch's table and weights.
//
// Pure functions; the worker threads call them (agent/replay.cc).
#pragma once

#include <cstdint>
#include <limits>
#include <span>

#include "core/ids.h"

namespace grace {

inline constexpr uint64_t kNoSwitchStep = std::numeric_limits<uint64_t>::max();

struct EpochClaim {
  uint64_t serving = 0;                  // the epoch of the rank's previous step
  uint64_t committed = 0;                // newest epoch it knows committed (0: none)
  uint64_t switch_step = kNoSwitchStep;  // that epoch's switch step
};
static_assert(sizeof(EpochClaim) == 24);

// The epoch of `step` given every rank's claim for it.
Epoch AgreedEpoch(std::span<const EpochClaim> claims, uint64_t step);

}  // namespace grace
