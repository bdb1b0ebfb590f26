// Spectral grouping of experts by affinity (DESIGN.md, method step 1).
//
// SpectralPartition splits a set of experts into parts of given sizes by recursive spectral
// bisection: the Fiedler vector of the normalised Laplacian of the affinity restricted to the
// set orders the experts, and the split point is fixed by the requested sizes (which is how
// group sizes stay controlled). ImproveBySwaps then swaps pairs of experts between parts while
// that raises the affinity kept inside parts. Pure functions.
#pragma once

#include <span>
#include <vector>

#include "policy/layer_stats.h"

namespace grace {

// Part index (into `sizes`) of each of `members`; sizes must sum to members.size().
std::vector<int> SpectralPartition(const AffinityMatrix& affinity,
                                   std::span<const ExpertId> members, std::span<const int> sizes);

// `part` gives each expert's part (-1: not moved); pairwise swaps between parts while the
// affinity inside parts grows. Sizes are unchanged.
void ImproveBySwaps(const AffinityMatrix& affinity, std::vector<int>* part, int max_passes = 8);

// Sum of affinity over pairs in the same part (each pair once).
double AffinityInsideParts(const AffinityMatrix& affinity, std::span<const int> part);

}  // namespace grace
