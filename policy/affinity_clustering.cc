#include "policy/affinity_clustering.h"

#include <algorithm>
#include <numeric>

namespace grace {

std::vector<RankId> AffinityGroupsToGpus(const AffinityMatrix& affinity,
                                         std::span<const double> load, const Topology& topology) {
  const int experts = static_cast<int>(load.size());
  const int ranks = topology.ranks();
  std::vector<int> room(ranks, experts / ranks);
  for (int r = 0; r < experts % ranks; ++r) ++room[r];
  const int cap = *std::max_element(room.begin(), room.end());

  // Clusters by representative: members, and the affinity between clusters (sums over pairs).
  std::vector<std::vector<ExpertId>> members(experts);
  std::vector<double> between(static_cast<size_t>(experts) * experts, 0.0);
  for (ExpertId a = 0; a < experts; ++a) {
    members[a] = {a};
    if (a >= affinity.num_experts()) continue;
    std::span<const double> row = affinity.row(a);
    for (ExpertId b = 0; b < experts && b < affinity.num_experts(); ++b) {
      if (b != a) between[static_cast<size_t>(a) * experts + b] = row[b];
    }
  }
  std::vector<char> active(experts, 1);
  while (true) {
    int best_a = -1, best_b = -1;
    double best = 0;
    for (int a = 0; a < experts; ++a) {
      if (!active[a]) continue;
      const double* row = between.data() + static_cast<size_t>(a) * experts;
      const int size_a = static_cast<int>(members[a].size());
      for (int b = a + 1; b < experts; ++b) {
        if (!active[b] || row[b] <= 0) continue;
        const int size_b = static_cast<int>(members[b].size());
        if (size_a + size_b > cap) continue;
        const double linkage = row[b] / (static_cast<double>(size_a) * size_b);
        if (linkage > best) best = linkage, best_a = a, best_b = b;
      }
    }
    if (best_a < 0) break;
    members[best_a].insert(members[best_a].end(), members[best_b].begin(), members[best_b].end());
    members[best_b].clear();
    active[best_b] = 0;
    for (int k = 0; k < experts; ++k) {
      const double moved = between[static_cast<size_t>(best_b) * experts + k];
      between[static_cast<size_t>(best_a) * experts + k] += moved;
      between[static_cast<size_t>(k) * experts + best_a] += moved;
    }
    between[static_cast<size_t>(best_a) * experts + best_a] = 0;
  }

  struct Group {
    std::vector<ExpertId> experts;
    double load = 0;
  };
  std::vector<Group> groups;
  for (int a = 0; a < experts; ++a) {
    if (!active[a]) continue;
    Group g{members[a], 0.0};
    for (ExpertId e : g.experts) g.load += std::max(0.0, load[e]);
    groups.push_back(std::move(g));
  }
  std::stable_sort(groups.begin(), groups.end(),
                   [](const Group& x, const Group& y) { return x.load > y.load; });
  std::vector<double> gpu_load(ranks, 0.0);
  std::vector<RankId> rank_of(experts, 0);
  auto least_loaded_with_room = [&](int size) {
    RankId best_rank = -1;
    for (RankId r = 0; r < ranks; ++r) {
      if (room[r] >= size && (best_rank < 0 || gpu_load[r] < gpu_load[best_rank])) best_rank = r;
    }
    return best_rank;
  };
  for (Group& g : groups) {
    const RankId whole = least_loaded_with_room(static_cast<int>(g.experts.size()));
    if (whole >= 0) {
      for (ExpertId e : g.experts) rank_of[e] = whole;
      room[whole] -= static_cast<int>(g.experts.size());
      gpu_load[whole] += g.load;
      continue;
    }
    std::stable_sort(g.experts.begin(), g.experts.end(),
                     [&](ExpertId x, ExpertId y) { return load[x] > load[y]; });
    for (ExpertId e : g.experts) {
      const RankId r = least_loaded_with_room(1);
      rank_of[e] = r;
      --room[r];
      gpu_load[r] += std::max(0.0, load[e]);
    }
  }
  return rank_of;
}

}  // namespace grace
