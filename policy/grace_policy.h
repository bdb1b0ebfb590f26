// GracePolicy: grace's placement method for one layer (DESIGN.md, "The method").
//
// With token-level stats (exact cost model):
//   1. two starting groupings, sizes E/D (equal): agglomerative groups packed onto GPUs by load
//      (policy/affinity_clustering.h), and hierarchical spectral grouping of the affinity
//      (experts to nodes, then to GPUs) refined by affinity swaps;
//   2. local search (moves and swaps, TokenPlacementSearch) on the objective, GPU sizes held
//      within E/D +- delta, for each delta of `size_ratios` (delta = max(1, round(E/D * r))),
//      each delta starting from the previous one's result;
//   3. greedy replication of each such grouping: each spare slot takes the (expert, GPU) pair
//      that lowers the exactly evaluated objective most, of a shortlist picked by the joint
//      search's approximately routed objective;
//   4. joint search (SlotPlacementSearch) from the `joint_starts` best candidates: primaries and
//      replicas move together (slot swaps across GPUs, a replica re-targeted to another expert),
//      so a replica lands next to its expert's partners on the other node and the grouping
//      closes around it; each result is re-scored exactly and kept when better;
//   5. locality routing weighted by inverse predicted load;
//   6. the balance guarantee: a plan whose hottest GPU is hotter than under EPLB's plan of the
//      same slots is kept only when its modeled layer time is lower than EPLB's, else EPLB's
//      plan is returned (LayerPlan::choice says which and why).
//   The objective (PlacementObjective) is the modeled layer time, plus its mean-based share,
//   plus `remote_send_weight` per remote send (the modeled time barely sees intra-node sends,
//   so without it the GPU-level grouping inside a node would not be steered), plus a penalty
//   above `max_imbalance`; a final plan over max_imbalance loses to any plan within it.
//   The delta with the best objective wins (the knee of kept affinity vs size spread).
// With co-activation but no tokens (recorded matrices, the live daemon's sampled pairs): as with
// tokens, on tokens drawn from the loads and the co-activation (policy/affinity_sampling.h).
// With load only (count-only sources, or online forecasts without tokens): replicas go to the
// experts with the highest load per replica (or first to every expert until each has a copy on
// every node, while slots last), copies of one expert on distinct nodes where the balance
// allows, packed heaviest first, then swapped to lower the hottest GPU; EPLB's packing is tried
// too, and of the candidates whose hottest GPU is no hotter than under EPLB's packing (with
// locality routing), the lowest modeled layer time wins; then the balance guarantee (step 6).
// Stateless; PlanLayer may run on several threads at once.
#pragma once

#include <vector>

#include "policy/placement_policy.h"

namespace grace {

struct GraceOptions {
  double max_imbalance = 1.10;  // tolerated max/mean GPU load (a penalty beyond it)
  // Cost of a remote send, in mean cross-node sends (see PlacementObjective). On Qwen1.5-MoE
  // 0.15 cuts remote sends about 5% for about 1% of modeled time; 0.3 and more push max/mean
  // load against its bound.
  double remote_send_weight = 0.15;
  std::vector<double> size_ratios = {0.0, 0.1, 0.25};
  int search_passes = 20;
  // Iterated local search: random 3-swap kicks per delta and start, each followed by a full
  // search. Off by default: on Qwen1.5-MoE 20 kicks cut remote sends about 2% for 40x the time.
  int kicks = 0;
  int replica_candidates = 32;  // hottest experts tried for each spare slot
  // Where scoring all those (GPU, expert) pairs exactly would cost more than
  // `replica_exact_pairs` (token, expert) pairs a round, the exact cost model scores only the
  // `replica_shortlist` best of them by the joint search's approximately routed objective. On
  // Qwen1.5-MoE (256 pairs a round over 17,428) 8 give the same plans as scoring all, about 30x
  // sooner; on Mixtral (about 48 over 700) everything is scored exactly, as the shortlist's
  // different greedy path there gave plans neither better nor worse throughout.
  int replica_shortlist = 8;
  double replica_exact_pairs = 1 << 18;
  int slot_search_passes = 10;  // joint search over primaries and replicas (0: off)
  int joint_starts = 2;         // best candidates the joint search starts from
  // Iterated-local-search kicks of each joint search (random slot swaps, then a search from the
  // GPUs they touched). Off by default: a kick often costs as much as a whole search.
  int joint_kicks = 0;
  int routing_iterations = 16;
  // Co-activation without tokens: tokens drawn from it (policy/affinity_sampling.h) to plan on;
  // 0: DefaultAffinityTokens.
  int affinity_tokens = 0;
};

class GracePolicy : public PlacementPolicy {
 public:
  explicit GracePolicy(GraceOptions options = {}) : options_(std::move(options)) {}
  std::string name() const override { return "grace"; }
  StatusOr<LayerPlan> PlanLayer(const LayerStats& stats, const Topology& topology,
                                const CostParams& params) const override;
  // From loads alone, each expert stays on the node and GPU that hold it in `current` while
  // that node (GPU) carries at most `slack` x its even share of the load more than the least
  // loaded one with room. FailedPrecondition with tokens (the token search plans from scratch).
  StatusOr<LayerPlan> PlanLayerNear(const LayerStats& stats, const Topology& topology,
                                    const CostParams& params, std::span<const ExpertId> current,
                                    double slack) const override;

 private:
  StatusOr<LayerPlan> PlanWithTokens(const LayerStats& stats, const Topology& topology,
                                     const CostParams& params) const;
  // `near`: a current row to stay close to (see PlanLayerNear), or empty.
  StatusOr<LayerPlan> PlanFromLoads(const LayerStats& stats, const Topology& topology,
                                    const CostParams& params, std::span<const ExpertId> near,
                                    double slack) const;

  // The balance guarantee: `plan` when its hottest GPU is no hotter than under EPLB's plan of
  // the same slots (EplbPolicy, its own routing), or, with `time_may_pay`, when its modeled
  // layer time is lower than EPLB's; else EPLB's plan. LayerPlan::choice says which and why.
  StatusOr<LayerPlan> NoHotterThanEplb(LayerPlan plan, const LayerStats& stats,
                                       const Topology& topology, const CostParams& params,
                                       bool time_may_pay) const;

  GraceOptions options_;
};

// Per-rank load the routing predicts, tokens spread evenly over home ranks.
std::vector<double> PredictedRankLoad(const LayerRouting& routing, std::span<const double> load,
                                      const Topology& topology);

}  // namespace grace
