// MigrationRounds: a re-placement split into rounds that each fit the spare expert slots of
// every rank (docs/protocol.md, "Rounds").
//
// An agent stages each new expert of a migration into a spare physical slot of its backend
// before READY (agent/slot_staging.h), and gets the old slots back only after the switch. A
// migration that needs more new experts in some (rank, layer) than that rank has spares
// therefore runs as several migrations, each its own epoch. Every round's placement is valid:
// each expert keeps at least one replica, so every intermediate epoch serves every token. A
// change of slot s (expert a -> b) is taken into a round when a still has a replica elsewhere
// in that round's placement; changes that only work together (a swap: a -> b here and b -> a
// there) are taken as a pair. When no change can be taken safely the rest runs as one round
// (`fell_back`), which an agent short of spares refuses (the migration aborts).
//
//   MigrationRounds r = PlanMigrationRounds(topology, from, to, spare_per_rank);
//   for (const Placement& p : r.rounds) { ... migrate to p, commit ... }
//
// Pure computation; thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "core/placement.h"
#include "core/topology.h"

namespace grace {

struct MigrationRounds {
  std::vector<Placement> rounds;  // the last one is `to`; one entry when it fits at once
  bool fell_back = false;         // the rest could not be split safely: one round
};

// New experts `to` puts on `rank` in `layer_index` (slots whose expert changes to a
// non-empty one): the spare slots that rank needs to stage them.
int NewSlotsOnRank(const Topology& topology, const Placement& from, const Placement& to,
                   int layer_index, RankId rank);

// `spare_per_rank[r]`: rank r's spare slots per layer; a negative value is unlimited. `from`
// and `to` are valid placements of `topology` with the same shape.
MigrationRounds PlanMigrationRounds(const Topology& topology, const Placement& from,
                                    const Placement& to, const std::vector<int>& spare_per_rank);

}  // namespace grace
