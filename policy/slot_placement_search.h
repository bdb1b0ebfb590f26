// SlotPlacementSearch: local search over a whole placement row (primaries and replicas
// together), scored on a layer's tokens with incremental updates.
//
// TokenPlacementSearch places one copy per expert; replicas chosen after it cannot make the
// grouping around them change. This search moves every copy: it swaps the contents of two slots
// on different GPUs, moves a copy into a free slot, and re-targets a replica (a copy of an expert
// with several copies becomes a copy of another expert), so a replica ends up next to the
// partners of its expert on the other node and the grouping closes around it.
//
// Routing inside the search is deterministic, an approximation of the locality rule
// (locality_routing.h): a token uses the copy on its home GPU, else one on its home node, else
// one elsewhere; among several copies in that tier it takes copy (token mod count). When an
// expert has at most one copy per node (the usual case) this is exactly the locality rule.
// Callers re-score the result with the exact cost model. For every token it keeps how many of
// its experts' chosen copies sit on each GPU and node, so a change touches only the tokens of
// the experts it changes. Candidates are scored without being applied (policy/
// slot_placement_scoring.cc), exactly as applying them would score: swaps and moves of experts
// with one copy each from SendCounters in O(ranks); changes of an expert with several copies
// from SendCounters too where each home's pairs go to one GPU before and after (one copy on
// every node), else token by token over the changed experts' pairs. (Tokens naming one expert
// twice, or counter tables over 16M entries: applied and taken back.) Not thread-safe; one per
// planning call.
#pragma once

#include <optional>
#include <random>
#include <span>
#include <vector>

#include "core/topology.h"
#include "policy/cost_model.h"
#include "policy/layer_stats.h"
#include "policy/placement_objective.h"
#include "policy/send_counters.h"

namespace grace {

class SlotPlacementSearch {
 public:
  SlotPlacementSearch(const LayerTokens& tokens, int num_experts, const Topology& topology,
                      const CostParams& params, const PlacementObjective& objective);

  // Starts from a placement row (topology.total_slots() long, kEmptySlot for free slots; every
  // expert at most once per GPU).
  void Reset(std::span<const ExpertId> row);
  // Swaps, moves and re-targets while the objective drops; returns the final objective.
  double Search(int max_passes);

  // Swaps `swaps` random pairs of slots (the kick of an iterated local search); the next
  // Search starts from the GPUs they touched.
  void Kick(std::mt19937& rng, int swaps);

  double Objective() const { return objective_.Score(traffic_, topology_, params_); }
  // The current placement row (slot order inside a GPU is not meaningful).
  std::vector<ExpertId> Row() const;
  const LayerTraffic& traffic() const { return traffic_; }

  // The objective after swapping the contents of slots a and b (on different GPUs; either may
  // be free, each expert at most once per GPU after it) or after slot a takes expert x,
  // computed without changing anything.
  double ScoreSwap(SlotId a, SlotId b);
  double ScoreRetarget(SlotId a, ExpertId x);
  // Slot a takes expert x (kEmptySlot frees it); x at most once per GPU after it.
  void Place(SlotId a, ExpertId x) { SetSlot(a, x); }

 private:
  // Slot contents change through these; each re-routes the tokens of the experts involved.
  void SetCopy(SlotId s, ExpertId e);  // bookkeeping only, no re-routing
  void SetSlot(SlotId s, ExpertId e);
  void SwapSlots(SlotId a, SlotId b);
  void Reroute(ExpertId e);
  RankId Choose(int pair) const;
  void Use(int pair, RankId g, int sign);
  void ToggleGpu(int token, RankId g, double sign);
  void ToggleNode(int token, NodeId n, double sign);
  bool Holds(RankId g, ExpertId e) const { return holds_[static_cast<size_t>(g) * experts_ + e]; }
  bool Single(ExpertId e) const { return e == kEmptySlot || copies_[e].size() == 1; }
  // The GPU each home's pairs of an expert with `copies` go to, when that depends on the home
  // alone (one copy, or one copy on every node); false otherwise.
  bool HomeRoutes(std::span<const RankId> copies, std::vector<RankId>* route);
  // Scores a change of the copies of `changed` (one or two experts) to `after` through
  // SendCounters; false where some routing is not a function of the home (then nothing is set).
  bool ScoreCopies(std::span<const ExpertId> changed, std::span<const std::vector<RankId>> after,
                   double* score);
  // The same for any copies, token by token: O(pairs of the changed experts), nothing written.
  double ScoreByTokens(std::span<const ExpertId> changed,
                       std::span<const std::vector<RankId>> after);
  // Token t's pairs of the changed experts go from out[i] to in[i] (-1: none): into scratch_.
  void AddTokenChange(int t, const RankId out[2], const RankId in[2]);
  double ScoreApplied(SlotId a, SlotId b);  // applies the swap and takes it back
  RankId ChooseAmong(std::span<const RankId> copies, int pair) const;
  std::span<const int> TokensOf(ExpertId e) const {
    return {tokens_.data() + token_begin_[e],
            static_cast<size_t>(token_begin_[e + 1] - token_begin_[e])};
  }

  const Topology& topology_;
  const CostParams& params_;
  PlacementObjective objective_;
  int experts_ = 0;
  int top_k_ = 0;
  std::vector<RankId> home_;                 // [token]
  std::vector<NodeId> node_of_;              // [rank]
  std::vector<int> pair_begin_, pairs_;      // (token, expert) pairs of each expert (CSR)
  std::vector<ExpertId> pair_expert_;        // [pair = token * top_k + k]
  std::vector<RankId> used_;                 // [pair]: the GPU it is routed to, -1 if none
  std::vector<uint16_t> gpu_count_;          // [token][rank]
  std::vector<uint16_t> node_count_;         // [token][node]
  std::vector<ExpertId> row_;                // [slot]
  std::vector<std::vector<RankId>> copies_;  // [expert]: GPUs holding it
  std::vector<char> holds_;                  // [rank][expert]
  std::vector<char> kicked_;                 // [rank]: touched by the last Kick
  std::vector<int> token_begin_, tokens_;    // distinct tokens of each expert (CSR)
  std::vector<int> expert_begin_;            // distinct experts of each token (CSR) ...
  std::vector<ExpertId> experts_of_;         // ... into this
  bool fast_ = true;                         // SendCounters scores one-copy changes
  bool track_ = true;                        // count changes reach counters_ (off on trials)
  std::optional<SendCounters> counters_;     // over home_ and the lists above
  LayerTraffic scratch_;
  // Scratch of the scoring: routes by home, copies after a change.
  std::vector<RankId> route_from_[2], route_to_[2];
  std::vector<RankId> node_copy_;
  std::vector<RankId> after_[2];
  std::vector<int> stamp_[2], other_pair_;  // [token], see ScoreByTokens
  int generation_ = 0;
  LayerTraffic traffic_;
};

}  // namespace grace
