#include "policy/grace_policy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "policy/affinity_clustering.h"
#include "policy/affinity_sampling.h"
#include "policy/baseline_policies.h"
#include "policy/eplb.h"
#include "policy/locality_routing.h"
#include "policy/slot_placement_search.h"
#include "policy/spectral_grouping.h"
#include "policy/token_placement_search.h"

namespace grace {

namespace {

std::vector<int> EvenSizes(int items, int parts) {
  std::vector<int> sizes(parts, items / parts);
  for (int i = 0; i < items % parts; ++i) ++sizes[i];
  return sizes;
}

// Experts to nodes, then to the GPUs of each node, by spectral partition into even sizes;
// `refine` adds affinity swaps at each level.
std::vector<RankId> HierarchicalSpectral(const AffinityMatrix& affinity, const Topology& topo,
                                         bool refine) {
  const int experts = affinity.num_experts();
  const std::vector<int> gpu_sizes = EvenSizes(experts, topo.ranks());
  std::vector<int> node_sizes(topo.nodes, 0);
  for (RankId r = 0; r < topo.ranks(); ++r) node_sizes[topo.NodeOfRank(r)] += gpu_sizes[r];
  std::vector<ExpertId> all(experts);
  std::iota(all.begin(), all.end(), 0);
  std::vector<int> node_of = SpectralPartition(affinity, all, node_sizes);
  if (refine) ImproveBySwaps(affinity, &node_of);
  std::vector<RankId> rank_of(experts, 0);
  for (NodeId n = 0; n < topo.nodes; ++n) {
    std::vector<ExpertId> members;
    for (ExpertId e = 0; e < experts; ++e) {
      if (node_of[e] == n) members.push_back(e);
    }
    const std::vector<int> sizes(gpu_sizes.begin() + n * topo.gpus_per_node,
                                 gpu_sizes.begin() + (n + 1) * topo.gpus_per_node);
    const std::vector<int> gpu_of = SpectralPartition(affinity, members, sizes);
    std::vector<int> part(experts, -1);
    for (size_t i = 0; i < members.size(); ++i) part[members[i]] = gpu_of[i];
    if (refine) ImproveBySwaps(affinity, &part);
    for (ExpertId e : members) rank_of[e] = n * topo.gpus_per_node + part[e];
  }
  return rank_of;
}

struct Scored {
  std::vector<ExpertId> row;
  double score = 0;
};

// Fills spare slots one at a time with the replica that lowers the objective most. Where
// scoring every (GPU, hot expert) pair exactly (locality routing on every token) would cost
// more than `replica_exact_pairs` (token, expert) pairs a round, every pair is scored by the
// joint search's incremental, approximately routed objective (`approx`, reset to the row here)
// and only the `replica_shortlist` best of them exactly; the best is placed while it lowers the
// exact objective.
Scored AddReplicasGreedy(std::vector<ExpertId> row, const LayerStats& stats, const Topology& topo,
                         const CostParams& params, const PlacementObjective& objective,
                         const GraceOptions& options, SlotPlacementSearch* approx) {
  const int experts = stats.num_experts();
  auto score_of = [&](const std::vector<ExpertId>& r) {
    LayerRouting routing = LocalityRouting(r, stats.load, topo, options.routing_iterations);
    return objective.Score(TrafficOnTokens(*stats.tokens, routing, topo), topo, params);
  };
  std::vector<ExpertId> hot(experts);
  std::iota(hot.begin(), hot.end(), 0);
  std::stable_sort(hot.begin(), hot.end(),
                   [&](ExpertId a, ExpertId b) { return stats.load[a] > stats.load[b]; });
  hot.resize(std::min<size_t>(hot.size(), std::max(1, options.replica_candidates)));
  Scored best{row, score_of(row)};
  approx->Reset(best.row);
  struct Candidate {
    double approx;
    SlotId slot;
    ExpertId expert;
    int order;  // in the scan: GPU, then hotness
  };
  std::vector<Candidate> candidates;
  while (true) {
    candidates.clear();
    for (RankId g = 0; g < topo.ranks(); ++g) {
      SlotId free_slot = -1;
      for (SlotId s = g * topo.slots_per_gpu; s < (g + 1) * topo.slots_per_gpu; ++s) {
        if (best.row[s] == kEmptySlot) {
          free_slot = s;
          break;
        }
      }
      if (free_slot < 0) continue;
      for (ExpertId e : hot) {
        const auto begin = best.row.begin() + g * topo.slots_per_gpu;
        if (std::find(begin, begin + topo.slots_per_gpu, e) != begin + topo.slots_per_gpu) {
          continue;
        }
        const int order = static_cast<int>(candidates.size());
        candidates.push_back({0.0, free_slot, e, order});
      }
    }
    size_t shortlist = candidates.size();
    const double pairs = static_cast<double>(stats.tokens->expert_ids.size());
    if (static_cast<double>(candidates.size()) * pairs > options.replica_exact_pairs) {
      for (Candidate& c : candidates) c.approx = approx->ScoreRetarget(c.slot, c.expert);
      shortlist = std::min<size_t>(candidates.size(), std::max(1, options.replica_shortlist));
      // Ties keep the scan order (GPU, then hotness), as the exact scan did.
      std::stable_sort(candidates.begin(), candidates.end(),
                       [](const Candidate& x, const Candidate& y) { return x.approx < y.approx; });
    }
    // Equal exact scores go to the earliest in the scan, as when every pair was scored.
    std::sort(candidates.begin(), candidates.begin() + shortlist,
              [](const Candidate& x, const Candidate& y) { return x.order < y.order; });
    SlotId best_slot = -1;
    ExpertId best_expert = -1;
    double best_score = best.score;
    for (size_t i = 0; i < shortlist; ++i) {
      const Candidate& c = candidates[i];
      best.row[c.slot] = c.expert;
      const double score = score_of(best.row);
      best.row[c.slot] = kEmptySlot;
      if (score < best_score) best_score = score, best_slot = c.slot, best_expert = c.expert;
    }
    if (best_slot < 0) break;
    best.row[best_slot] = best_expert;
    best.score = best_score;
    approx->Place(best_slot, best_expert);
  }
  return best;
}

}  // namespace

std::vector<double> PredictedRankLoad(const LayerRouting& routing, std::span<const double> load,
                                      const Topology& topology) {
  std::vector<double> out(topology.ranks(), 0.0);
  const int ranks = topology.ranks();
  for (ExpertId e = 0; e < routing.num_experts(); ++e) {
    std::span<const SlotId> slots = routing.Replicas(e);
    if (slots.size() == 1) {
      out[topology.RankOfSlot(slots[0])] += load[e];
      continue;
    }
    for (int v = 0; v < routing.NumViews(e); ++v) {
      std::span<const double> p = routing.ViewProbabilities(e, v);
      const double view_load = load[e] / ranks * routing.ViewRanks(e, v);
      for (size_t i = 0; i < slots.size(); ++i) {
        out[topology.RankOfSlot(slots[i])] += view_load * p[i];
      }
    }
  }
  return out;
}

StatusOr<LayerPlan> GracePolicy::PlanLayer(const LayerStats& stats, const Topology& topology,
                                           const CostParams& params) const {
  GRACE_RETURN_IF_ERROR(CheckLayerInput(stats, topology));
  if (stats.tokens && stats.tokens->num_tokens() > 0) {
    GRACE_ASSIGN_OR_RETURN(LayerPlan plan, PlanWithTokens(stats, topology, params));
    return NoHotterThanEplb(std::move(plan), stats, topology, params, /*time_may_pay=*/true);
  }
  if (stats.affinity && HasPairs(*stats.affinity)) {
    // Co-activation without tokens (recorded matrices, the live daemon's pairs): the same
    // grouping, on tokens drawn from the statistics.
    AffinitySamplingOptions sampling;
    sampling.num_tokens = options_.affinity_tokens;
    const LayerStats sampled = WithAffinityTokens(stats, sampling);
    GRACE_ASSIGN_OR_RETURN(LayerPlan plan, PlanWithTokens(sampled, topology, params));
    return NoHotterThanEplb(std::move(plan), sampled, topology, params, /*time_may_pay=*/true);
  }
  GRACE_ASSIGN_OR_RETURN(LayerPlan plan, PlanFromLoads(stats, topology, params, {}, 0.0));
  return NoHotterThanEplb(std::move(plan), stats, topology, params, /*time_may_pay=*/true);
}

StatusOr<LayerPlan> GracePolicy::NoHotterThanEplb(LayerPlan plan, const LayerStats& stats,
                                                  const Topology& topo, const CostParams& params,
                                                  bool time_may_pay) const {
  StatusOr<LayerPlan> eplb = EplbPolicy().PlanLayer(stats, topo, params);
  if (!eplb.ok()) {
    plan.choice = "grace (EPLB has no plan: " + eplb.status().message() + ")";
    return plan;
  }
  const LayerCost mine = EvaluateLayer(stats, plan.routing, topo, params);
  const LayerCost theirs = EvaluateLayer(stats, eplb->routing, topo, params);
  char why[200];
  if (mine.imbalance <= theirs.imbalance * (1 + 1e-9)) {
    std::snprintf(why, sizeof why, "grace: max/mean %.3f, no hotter than EPLB's %.3f",
                  mine.imbalance, theirs.imbalance);
    plan.choice = why;
    return plan;
  }
  if (time_may_pay && mine.layer_ms < theirs.layer_ms) {
    std::snprintf(why, sizeof why,
                  "grace: max/mean %.3f above EPLB's %.3f, paid by a modeled layer time of %.3f "
                  "ms against %.3f",
                  mine.imbalance, theirs.imbalance, mine.layer_ms, theirs.layer_ms);
    plan.choice = why;
    return plan;
  }
  // EPLB's packing, with locality routing where that is no hotter and faster than its own.
  LayerPlan fallback = std::move(*eplb);
  LayerRouting local = LocalityRouting(fallback.row, stats.load, topo, options_.routing_iterations);
  const LayerCost local_cost = EvaluateLayer(stats, local, topo, params);
  if (local_cost.imbalance <= theirs.imbalance * (1 + 1e-9) &&
      local_cost.layer_ms < theirs.layer_ms) {
    fallback.routing = std::move(local);
  }
  std::snprintf(why, sizeof why, "eplb: grace's plan had max/mean %.3f against EPLB's %.3f%s",
                mine.imbalance, theirs.imbalance,
                time_may_pay ? " and no faster modeled time" : "");
  fallback.choice = why;
  return fallback;
}

StatusOr<LayerPlan> GracePolicy::PlanWithTokens(const LayerStats& stats, const Topology& topo,
                                                const CostParams& params) const {
  const int experts = stats.num_experts();
  const int ranks = topo.ranks();
  AffinityMatrix affinity(experts);
  if (stats.affinity) {
    affinity = *stats.affinity;
  } else {
    const LayerTokens& t = *stats.tokens;
    for (int i = 0; i < t.num_tokens(); ++i) {
      affinity.AddToken(
          {t.expert_ids.data() + static_cast<size_t>(i) * t.top_k, static_cast<size_t>(t.top_k)});
    }
  }
  std::vector<RankId> rank_of = AffinityGroupsToGpus(affinity, stats.load, topo);

  PlacementObjective objective;
  objective.max_imbalance = options_.max_imbalance;
  objective.remote_send_weight = options_.remote_send_weight;
  {
    GRACE_ASSIGN_OR_RETURN(std::vector<ExpertId> row, RowFromRanks(rank_of, topo));
    LayerRouting routing = LocalityRouting(row, stats.load, topo, 1);
    objective.reference_ms =
        CostFromTraffic(TrafficOnTokens(*stats.tokens, routing, topo), topo, params).layer_ms;
  }
  TokenPlacementSearch search(*stats.tokens, experts, topo, params, objective);
  SlotPlacementSearch slot_search(*stats.tokens, experts, topo, params, objective);
  // The joint search routes approximately, so its result is re-scored exactly; a result over
  // the imbalance bound loses to every result within it.
  auto exact_score = [&](const std::vector<ExpertId>& row) {
    LayerRouting routing = LocalityRouting(row, stats.load, topo, options_.routing_iterations);
    const LayerTraffic traffic = TrafficOnTokens(*stats.tokens, routing, topo);
    const double score = objective.Score(traffic, topo, params);
    const bool over = CostFromTraffic(traffic, topo, params).imbalance > options_.max_imbalance;
    return over ? score + 1e3 * objective.reference_ms : score;
  };
  std::vector<double> ratios = options_.size_ratios;
  if (ratios.empty()) ratios.push_back(0.0);
  std::sort(ratios.begin(), ratios.end());
  const double per_gpu = static_cast<double>(experts) / ranks;
  std::vector<Scored> candidates;
  // Two starts: agglomerative groups packed by load (which keeps disjoint groups whole where the
  // spectral order may cut them), and spectral grouping refined by swaps.
  for (int start = 0; start < 2; ++start) {
    search.Reset(start == 0 ? rank_of : HierarchicalSpectral(affinity, topo, true));
    for (double r : ratios) {
      const int delta = r <= 0 ? 0 : std::max(1, static_cast<int>(std::lround(per_gpu * r)));
      const int lo = std::max(1, static_cast<int>(std::floor(per_gpu)) - delta);
      const int hi = std::min(topo.slots_per_gpu, static_cast<int>(std::ceil(per_gpu)) + delta);
      // Each delta starts from the previous one's result: wider bounds keep it feasible.
      const std::vector<int> min_size(ranks, lo), max_size(ranks, hi);
      double current = search.Search(min_size, max_size, options_.search_passes);
      // Iterated local search: kick the local optimum with random swaps, search again, keep
      // the result when it is better.
      std::mt19937 rng(12345 + start);
      for (int kick = 0; kick < options_.kicks; ++kick) {
        const std::vector<RankId> saved = search.rank_of_expert();
        for (int k = 0; k < 3; ++k) {
          const ExpertId a = static_cast<ExpertId>(rng() % experts);
          const ExpertId b = static_cast<ExpertId>(rng() % experts);
          search.Swap(a, b);
        }
        const double kicked = search.Search(min_size, max_size, options_.search_passes);
        if (kicked < current) {
          current = kicked;
        } else {
          search.Reset(saved);
        }
      }
      GRACE_ASSIGN_OR_RETURN(std::vector<ExpertId> row,
                             RowFromRanks(search.rank_of_expert(), topo));
      candidates.push_back(AddReplicasGreedy(std::move(row), stats, topo, params, objective,
                                             options_, &slot_search));
    }
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Scored& a, const Scored& b) { return a.score < b.score; });
  Scored best = candidates.front();
  best.score = exact_score(best.row);
  const int joint = options_.slot_search_passes > 0
                        ? std::min<int>(candidates.size(), std::max(1, options_.joint_starts))
                        : 0;
  for (int i = 0; i < joint; ++i) {
    slot_search.Reset(candidates[i].row);
    double current = slot_search.Search(options_.slot_search_passes);
    // Iterated local search: kick the local optimum with random swaps, search again from the
    // GPUs they touched, keep the result when it is better.
    std::mt19937 rng(977 + i);
    std::vector<ExpertId> kept = slot_search.Row();
    for (int kick = 0; kick < options_.joint_kicks; ++kick) {
      slot_search.Kick(rng, 2 + kick % 3);
      const double kicked = slot_search.Search(options_.slot_search_passes);
      if (kicked < current - 1e-12 * current) {
        current = kicked;
        kept = slot_search.Row();
      } else {
        slot_search.Reset(kept);
      }
    }
    std::vector<ExpertId> row = std::move(kept);
    const double score = exact_score(row);
    if (score < best.score) best = {std::move(row), score};
  }
  LayerPlan plan;
  plan.routing = LocalityRouting(best.row, stats.load, topo, options_.routing_iterations);
  plan.row = std::move(best.row);
  return plan;
}

StatusOr<LayerPlan> GracePolicy::PlanLayerNear(const LayerStats& stats, const Topology& topology,
                                               const CostParams& params,
                                               std::span<const ExpertId> current,
                                               double slack) const {
  GRACE_RETURN_IF_ERROR(CheckLayerInput(stats, topology));
  if (stats.tokens && stats.tokens->num_tokens() > 0) {
    return FailedPrecondition("grace plans a layer with tokens only from scratch");
  }
  if (current.size() != static_cast<size_t>(topology.total_slots())) {
    return InvalidArgument("the current row has " + std::to_string(current.size()) +
                           " slots, the topology " + std::to_string(topology.total_slots()));
  }
  return PlanFromLoads(stats, topology, params, current, std::max(0.0, slack));
}

}  // namespace grace
