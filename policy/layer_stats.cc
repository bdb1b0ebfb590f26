#include "policy/layer_stats.h"

#include <numeric>
#include <string>

namespace grace {

void AffinityMatrix::AddToken(std::span<const ExpertId> experts, double weight) {
  for (size_t i = 0; i < experts.size(); ++i) {
    const ExpertId a = experts[i];
    if (a < 0 || a >= num_experts_) continue;
    counts_[static_cast<size_t>(a) * num_experts_ + a] += weight;
    for (size_t j = i + 1; j < experts.size(); ++j) {
      const ExpertId b = experts[j];
      if (b < 0 || b >= num_experts_ || b == a) continue;
      AddPair(a, b, weight);
    }
  }
}

void AffinityMatrix::AddPair(ExpertId a, ExpertId b, double weight) {
  counts_[static_cast<size_t>(a) * num_experts_ + b] += weight;
  if (a != b) counts_[static_cast<size_t>(b) * num_experts_ + a] += weight;
}

void AffinityMatrix::Decay(double factor) {
  for (double& c : counts_) c *= factor;
}

double LayerStats::total_load() const {
  return std::accumulate(load.begin(), load.end(), 0.0);
}

double LayerStats::num_tokens() const {
  return total_load() / (top_k > 0 ? top_k : 1);
}

StatusOr<std::vector<LayerStats>> LayerStatsFromTrace(const Trace& trace) {
  const int layers = trace.info.num_layers();
  const int experts = trace.info.num_experts;
  const int top_k = trace.info.top_k;
  if (layers == 0 || experts <= 0) {
    return InvalidArgument("trace has no layers or no experts (" + std::to_string(layers) +
                           " layers, " + std::to_string(experts) + " experts)");
  }
  std::vector<std::vector<double>> loads = trace.LayerLoads();
  std::vector<LayerStats> out(layers);
  bool has_tokens = false;
  bool has_coactivation = false;
  for (const TraceStep& step : trace.steps) {
    has_tokens |= step.kind == TraceKind::kTokens && step.tokens.num_tokens > 0;
    has_coactivation |= step.kind == TraceKind::kCounts && !step.counts.coactivation.empty();
  }
  if (has_tokens && top_k <= 0) return InvalidArgument("token-level trace without top_k");
  for (int l = 0; l < layers; ++l) {
    LayerStats& s = out[l];
    s.layer_id = trace.info.layer_ids[l];
    s.top_k = top_k;
    s.load = std::move(loads[l]);
    if (has_tokens) {
      s.tokens.emplace();
      s.tokens->top_k = top_k;
    }
    if (has_tokens || has_coactivation) s.affinity.emplace(experts);
  }
  bool all_homes = has_tokens;
  for (const TraceStep& step : trace.steps) {
    if (step.kind == TraceKind::kTokens && step.tokens.home_rank.empty()) all_homes = false;
  }
  for (const TraceStep& step : trace.steps) {
    if (step.kind == TraceKind::kCounts) {
      if (step.counts.coactivation.empty()) continue;
      const size_t per_layer = static_cast<size_t>(experts) * experts;
      if (step.counts.coactivation.size() != per_layer * layers) {
        return InvalidArgument("count step co-activation has " +
                               std::to_string(step.counts.coactivation.size()) +
                               " entries, expected " + std::to_string(per_layer * layers));
      }
      for (int l = 0; l < layers; ++l) {
        const double* m = step.counts.coactivation.data() + l * per_layer;
        for (ExpertId a = 0; a < experts; ++a) {
          for (ExpertId b = a + 1; b < experts; ++b) {
            out[l].affinity->AddPair(a, b, 0.5 * (m[a * experts + b] + m[b * experts + a]));
          }
        }
      }
      continue;
    }
    const TokenBatch& batch = step.tokens;
    const size_t per_layer = static_cast<size_t>(batch.num_tokens) * top_k;
    if (batch.expert_ids.size() != per_layer * layers) {
      return InvalidArgument("token step has " + std::to_string(batch.expert_ids.size()) +
                             " expert ids, expected " + std::to_string(per_layer * layers));
    }
    for (int l = 0; l < layers; ++l) {
      LayerTokens& t = *out[l].tokens;
      const ExpertId* ids = batch.expert_ids.data() + l * per_layer;
      t.expert_ids.insert(t.expert_ids.end(), ids, ids + per_layer);
      if (all_homes) {
        t.home_rank.insert(t.home_rank.end(), batch.home_rank.begin(), batch.home_rank.end());
      }
      for (int i = 0; i < batch.num_tokens; ++i) {
        out[l].affinity->AddToken(
            {ids + static_cast<size_t>(i) * top_k, static_cast<size_t>(top_k)});
      }
    }
  }
  for (LayerStats& s : out) {
    if (!s.tokens) continue;
    for (ExpertId& e : s.tokens->expert_ids) {
      if (e < 0 || e >= experts) e = kEmptySlot;  // the cost model skips these
    }
  }
  return out;
}

}  // namespace grace
