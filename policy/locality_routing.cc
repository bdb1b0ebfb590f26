#include "policy/locality_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace grace {

namespace {

// Indices (into Replicas(e)) of the best-tier replicas of `e` seen from `rank`.
void BestTier(const LayerRouting& routing, const Topology& topo, RankId rank, ExpertId e,
              std::vector<int>* out) {
  out->clear();
  std::span<const SlotId> slots = routing.Replicas(e);
  int best = 2;
  for (size_t i = 0; i < slots.size(); ++i) {
    const RankId g = topo.RankOfSlot(slots[i]);
    const int tier = g == rank ? 0 : topo.NodeOfRank(g) == topo.NodeOfRank(rank) ? 1 : 2;
    if (tier < best) {
      best = tier;
      out->clear();
    }
    if (tier == best) out->push_back(static_cast<int>(i));
  }
}

// The per-rank factors of the locality rule (see the header), and the rank loads they predict.
// `replicas_of(e)` gives expert e's replica slots, ascending.
template <typename ReplicasOf>
std::vector<double> SolveRankFactors(ReplicasOf replicas_of, std::span<const double> load,
                                     const Topology& topology, int iterations,
                                     std::vector<double>* predicted_out) {
  const int experts = static_cast<int>(load.size());
  const int ranks = topology.ranks();
  const int per_node = topology.gpus_per_node;
  // Single-replica experts are fixed; their load is the base of every rank's prediction.
  std::vector<double> base(ranks, 0.0);
  std::vector<ExpertId> shared;
  for (ExpertId e = 0; e < experts; ++e) {
    std::span<const SlotId> slots = replicas_of(e);
    if (slots.size() == 1) {
      base[topology.RankOfSlot(slots[0])] += load[e];
    } else if (!slots.empty()) {
      shared.push_back(e);
    }
  }
  // Ranks that see the same best tier of an expert form one class: each rank holding a copy
  // (its own copies), and per node the ranks holding none (the node's copies, else all).
  struct RankClass {
    ExpertId expert;
    int tier_begin, tier_end;  // into tier_slots
    double ranks;              // how many ranks it stands for
  };
  std::vector<RankClass> classes;
  std::vector<int> tier_slots;  // indices into replicas_of(expert)
  std::vector<int> holders_on_node(topology.nodes);
  for (ExpertId e : shared) {
    std::span<const SlotId> slots = replicas_of(e);
    std::fill(holders_on_node.begin(), holders_on_node.end(), 0);
    for (size_t k = 0; k < slots.size(); ++k) {
      const RankId g = topology.RankOfSlot(slots[k]);
      const bool first_on_rank = k == 0 || topology.RankOfSlot(slots[k - 1]) != g;
      if (first_on_rank) {
        ++holders_on_node[topology.NodeOfRank(g)];
        classes.push_back({e, static_cast<int>(tier_slots.size()), 0, 1.0});
      }
      tier_slots.push_back(static_cast<int>(k));
      classes.back().tier_end = static_cast<int>(tier_slots.size());
    }
    for (NodeId n = 0; n < topology.nodes; ++n) {
      const int others = per_node - holders_on_node[n];
      if (others == 0) continue;
      RankClass c{e, static_cast<int>(tier_slots.size()), 0, static_cast<double>(others)};
      for (size_t k = 0; k < slots.size(); ++k) {
        if (holders_on_node[n] == 0 || topology.NodeOfSlot(slots[k]) == n) {
          tier_slots.push_back(static_cast<int>(k));
        }
      }
      c.tier_end = static_cast<int>(tier_slots.size());
      classes.push_back(c);
    }
  }
  // Each round weighs replicas by the inverse of their GPU's predicted load, compounded over
  // rounds (a per-rank factor), so the weights settle where the predicted loads even out as far
  // as the tiers allow, instead of stopping at one inverse-load step.
  std::vector<double> factor(ranks, 1.0), predicted(ranks);
  const double mean = std::accumulate(load.begin(), load.end(), 0.0) / ranks;
  for (int it = 0; it < std::max(1, iterations); ++it) {
    predicted = base;
    for (const RankClass& c : classes) {
      std::span<const SlotId> slots = replicas_of(c.expert);
      double sum = 0;
      for (int i = c.tier_begin; i < c.tier_end; ++i) {
        sum += factor[topology.RankOfSlot(slots[tier_slots[i]])];
      }
      const double share = load[c.expert] / ranks * c.ranks / sum;
      for (int i = c.tier_begin; i < c.tier_end; ++i) {
        const RankId g = topology.RankOfSlot(slots[tier_slots[i]]);
        predicted[g] += share * factor[g];
      }
    }
    if (it + 1 == iterations || mean <= 0) break;
    // Square root: a damped step, so two hot ranks do not trade places every round.
    for (RankId r = 0; r < ranks; ++r) {
      factor[r] *= std::sqrt(mean / std::max(predicted[r], 1e-9 * mean));
    }
  }
  if (predicted_out != nullptr) *predicted_out = std::move(predicted);
  return factor;
}

}  // namespace

LayerRouting LocalityRouting(std::span<const ExpertId> row, std::span<const double> load,
                             const Topology& topology, int iterations) {
  const int experts = static_cast<int>(load.size());
  const int ranks = topology.ranks();
  LayerRouting routing(row, experts, ranks);
  const std::vector<double> factor = SolveRankFactors(
      [&](ExpertId e) { return routing.Replicas(e); }, load, topology, iterations, nullptr);
  // Every rank's probabilities from the factors, over its best tier.
  std::vector<int> tier;
  for (ExpertId e = 0; e < experts; ++e) {
    std::span<const SlotId> slots = routing.Replicas(e);
    if (slots.size() == 1) {
      for (RankId r = 0; r < ranks; ++r) routing.MutableProbabilities(r, e)[0] = 1.0;
      continue;
    }
    for (RankId r = 0; r < ranks; ++r) {
      BestTier(routing, topology, r, e, &tier);
      std::span<double> p = routing.MutableProbabilities(r, e);
      double sum = 0;
      for (int k : tier) sum += factor[topology.RankOfSlot(slots[k])];
      for (int k : tier) p[k] = factor[topology.RankOfSlot(slots[k])] / sum;
    }
  }
  return routing;
}

std::vector<double> LocalityRankLoads(std::span<const ExpertId> row, std::span<const double> load,
                                      const Topology& topology, int iterations) {
  const int experts = static_cast<int>(load.size());
  std::vector<int> begin(experts + 1, 0);
  for (ExpertId e : row) {
    if (e != kEmptySlot) ++begin[e + 1];
  }
  std::partial_sum(begin.begin(), begin.end(), begin.begin());
  std::vector<SlotId> slots(begin.back());
  std::vector<int> fill(begin.begin(), begin.end() - 1);
  for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
    if (row[s] != kEmptySlot) slots[fill[row[s]]++] = s;
  }
  std::vector<double> predicted;
  SolveRankFactors(
      [&](ExpertId e) {
        return std::span<const SlotId>(slots.data() + begin[e],
                                       static_cast<size_t>(begin[e + 1] - begin[e]));
      },
      load, topology, iterations, &predicted);
  return predicted;
}

LayerRouting UniformRouting(std::span<const ExpertId> row, int num_experts,
                            const Topology& topology) {
  LayerRouting routing(row, num_experts, topology.ranks());
  for (ExpertId e = 0; e < num_experts; ++e) {
    const size_t n = routing.Replicas(e).size();
    for (RankId r = 0; r < topology.ranks(); ++r) {
      for (double& p : routing.MutableProbabilities(r, e)) p = 1.0 / n;
    }
  }
  return routing;
}

StatusOr<std::shared_ptr<const RoutingTable>> BuildRoutingTable(
    Epoch epoch, const Topology& topology, const Placement& placement,
    std::span<const LayerRouting> routings) {
  if (static_cast<int>(routings.size()) != placement.num_layers()) {
    return InvalidArgument("BuildRoutingTable: " + std::to_string(routings.size()) +
                           " routings for " + std::to_string(placement.num_layers()) + " layers");
  }
  RoutingTableBuilder builder(epoch, topology, placement);
  for (int li = 0; li < placement.num_layers(); ++li) {
    const LayerRouting& routing = routings[li];
    for (RankId r = 0; r < topology.ranks(); ++r) {
      for (ExpertId e = 0; e < placement.num_experts; ++e) {
        std::span<const SlotId> slots = routing.Replicas(e);
        std::span<const double> p = routing.Probabilities(r, e);
        std::vector<SlotId> best = builder.BestTierSlots(li, r, e);
        std::vector<double> w;
        double outside = 0;
        for (size_t i = 0; i < slots.size(); ++i) {
          if (std::find(best.begin(), best.end(), slots[i]) != best.end()) {
            w.push_back(p[i]);
          } else {
            outside += p[i];
          }
        }
        if (outside > 1e-9) {
          return InvalidArgument("layer " + std::to_string(placement.layer_ids[li]) + ", rank " +
                                 std::to_string(r) + ", expert " + std::to_string(e) +
                                 ": routing sends weight outside the best locality tier");
        }
        builder.SetWeights(li, r, e, w);
      }
    }
  }
  return builder.Build();
}

}  // namespace grace
