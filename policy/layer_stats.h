// LayerStats: what a placement policy knows about one MoE layer.
//
// Per-expert load always; a within-layer co-activation (affinity) matrix when the source has
// token-level data or recorded co-activation; and, for token-level sources, the tokens
// themselves, so the cost model can evaluate a placement exactly. Built from a Trace by
// LayerStatsFromTrace, and later from online forecasts (load only, or load plus a decayed
// AffinityMatrix). Plain values; no I/O.
//
//   StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(trace);
//   LayerPlan plan = policy.PlanLayer((*stats)[0], topology, cost_params);
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "core/ids.h"
#include "core/status.h"
#include "core/trace.h"

namespace grace {

// Symmetric co-activation counts of one layer: at(a, b) = how often experts a and b served the
// same token (a != b). The diagonal holds each expert's own count. Online users Decay() it each
// window and add the new tokens, which makes it an exponentially weighted count.
class AffinityMatrix {
 public:
  AffinityMatrix() = default;
  explicit AffinityMatrix(int num_experts)
      : num_experts_(num_experts), counts_(static_cast<size_t>(num_experts) * num_experts, 0.0) {}

  int num_experts() const { return num_experts_; }
  double at(ExpertId a, ExpertId b) const {
    return counts_[static_cast<size_t>(a) * num_experts_ + b];
  }
  std::span<const double> row(ExpertId a) const {
    return {counts_.data() + static_cast<size_t>(a) * num_experts_,
            static_cast<size_t>(num_experts_)};
  }
  // Adds one token that chose `experts` (ids outside [0, E) are ignored).
  void AddToken(std::span<const ExpertId> experts, double weight = 1.0);
  // Adds weight to the pair (a, b) and (b, a); for sources that record co-activation.
  void AddPair(ExpertId a, ExpertId b, double weight);
  // Multiplies every count by `factor` in [0, 1]: the decay of an online window.
  void Decay(double factor);

 private:
  int num_experts_ = 0;
  std::vector<double> counts_;
};

// The tokens of one layer, in trace order: token i chose expert_ids[i*top_k .. i*top_k+top_k).
struct LayerTokens {
  int top_k = 0;
  std::vector<ExpertId> expert_ids;
  // Recorded home ranks, or empty: then token i lives on BlockHomeRank(i, ranks).
  std::vector<RankId> home_rank;

  int num_tokens() const { return top_k == 0 ? 0 : static_cast<int>(expert_ids.size()) / top_k; }
  RankId HomeRank(int token, int ranks) const {
    return home_rank.empty() ? BlockHomeRank(token, ranks) : home_rank[token] % ranks;
  }
};

struct LayerStats {
  LayerId layer_id = 0;
  int top_k = 0;             // experts per token; 0 when unknown (then taken as 1)
  std::vector<double> load;  // (token, expert) assignments per expert
  std::optional<AffinityMatrix> affinity;
  std::optional<LayerTokens> tokens;

  int num_experts() const { return static_cast<int>(load.size()); }
  double total_load() const;
  // Tokens through the layer: total load / top_k.
  double num_tokens() const;
};

// One LayerStats per layer of `trace`: loads summed over all steps; tokens and affinity from
// the token-level steps (tokens concatenated in step order, so token i is the trace's i-th
// token); recorded co-activation from count-only steps.
StatusOr<std::vector<LayerStats>> LayerStatsFromTrace(const Trace& trace);

}  // namespace grace
