// Agglomerative affinity grouping: experts that are used together merged into groups no larger
// than a GPU's share, then the groups packed onto GPUs by load (DESIGN.md, method step 1, the
// greedy form of it).
//
// Spectral bisection (policy/spectral_grouping.h) orders experts by the Fiedler vector, which
// is ill-defined when the affinity falls apart into disjoint groups (experts that fire only
// with each other): it may then cut every group. Merging by average linkage keeps such groups
// whole by construction; GracePolicy starts its local search from both and keeps the better.
// Pure functions.
#pragma once

#include <span>
#include <vector>

#include "core/topology.h"
#include "policy/layer_stats.h"

namespace grace {

// The GPU of each expert: every GPU holds E / ranks experts (the first E mod ranks one more).
// Groups are merged while some pair has affinity and fits a GPU, the pair with the highest
// mean affinity per member pair first; then packed heaviest first onto the least loaded GPU
// with room for the whole group, and a group no GPU has room for is spread expert by expert.
std::vector<RankId> AffinityGroupsToGpus(const AffinityMatrix& affinity,
                                         std::span<const double> load, const Topology& topology);

}  // namespace grace
