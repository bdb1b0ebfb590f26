#include "policy/locality_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace grace {

namespace {

// The per-rank factors of the locality rule (see the header), and the rank loads they predict.
// The ranks that see an expert through one view (LayerRouting's views: a GPU holding a copy, a
// node's other GPUs, the nodes holding none) share its nearest replicas: one term per view.
std::vector<double> SolveRankFactors(const LayerRouting& routing, std::span<const double> load,
                                     const Topology& topology, int iterations,
                                     std::vector<double>* predicted_out) {
  const int experts = static_cast<int>(load.size());
  const int ranks = topology.ranks();
  // Single-replica experts are fixed; their load is the base of every rank's prediction.
  std::vector<double> base(ranks, 0.0);
  struct ViewTerm {
    ExpertId expert;
    int first, last;  // its nearest replicas' GPUs, indices into term_ranks
    double ranks;     // how many ranks it stands for
  };
  std::vector<ViewTerm> terms;
  std::vector<RankId> term_ranks;
  for (ExpertId e = 0; e < experts; ++e) {
    std::span<const SlotId> slots = routing.Replicas(e);
    if (slots.size() == 1) {
      base[topology.RankOfSlot(slots[0])] += load[e];
      continue;
    }
    for (int v = 0; v < routing.NumViews(e) && !slots.empty(); ++v) {
      if (routing.ViewRanks(e, v) == 0) continue;
      const auto [first, last] = routing.ViewReplicas(e, v);
      const int begin = static_cast<int>(term_ranks.size());
      for (int i = first; i < last; ++i) term_ranks.push_back(topology.RankOfSlot(slots[i]));
      terms.push_back({e, begin, static_cast<int>(term_ranks.size()),
                       static_cast<double>(routing.ViewRanks(e, v))});
    }
  }
  // Each round weighs replicas by the inverse of their GPU's predicted load, compounded over
  // rounds (a per-rank factor), so the weights settle where the predicted loads even out as far
  // as the tiers allow, instead of stopping at one inverse-load step.
  std::vector<double> factor(ranks, 1.0), predicted(ranks);
  const double mean = std::accumulate(load.begin(), load.end(), 0.0) / ranks;
  for (int it = 0; it < std::max(1, iterations); ++it) {
    predicted = base;
    for (const ViewTerm& c : terms) {
      double sum = 0;
      for (int i = c.first; i < c.last; ++i) sum += factor[term_ranks[i]];
      const double share = load[c.expert] / ranks * c.ranks / sum;
      for (int i = c.first; i < c.last; ++i)
        predicted[term_ranks[i]] += share * factor[term_ranks[i]];
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
  LayerRouting routing(row, experts, topology);
  const std::vector<double> factor = SolveRankFactors(routing, load, topology, iterations, nullptr);
  // Each view's probabilities from the factors, over its nearest replicas.
  for (ExpertId e = 0; e < experts; ++e) {
    std::span<const SlotId> slots = routing.Replicas(e);
    for (int v = 0; v < routing.NumViews(e) && !slots.empty(); ++v) {
      const auto [first, last] = routing.ViewReplicas(e, v);
      std::span<double> p = routing.MutableViewProbabilities(e, v);
      if (slots.size() == 1) {
        p[0] = 1.0;
        continue;
      }
      double sum = 0;
      for (int k = first; k < last; ++k) sum += factor[topology.RankOfSlot(slots[k])];
      for (int k = first; k < last; ++k) p[k] = factor[topology.RankOfSlot(slots[k])] / sum;
    }
  }
  return routing;
}

std::vector<double> LocalityRankLoads(std::span<const ExpertId> row, std::span<const double> load,
                                      const Topology& topology, int iterations) {
  const LayerRouting replicas(row, static_cast<int>(load.size()), topology);
  std::vector<double> predicted;
  SolveRankFactors(replicas, load, topology, iterations, &predicted);
  return predicted;
}

LayerRouting UniformRouting(std::span<const ExpertId> row, int num_experts,
                            const Topology& topology) {
  LayerRouting routing(row, num_experts, topology);
  for (ExpertId e = 0; e < num_experts; ++e) {
    const size_t n = routing.Replicas(e).size();
    for (int v = 0; v < routing.NumViews(e); ++v) {
      for (double& p : routing.MutableViewProbabilities(e, v)) p = 1.0 / n;
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
