#include "core/trace.h"

namespace grace {

const char* TraceKindName(TraceKind kind) {
  return kind == TraceKind::kTokens ? "tokens" : "counts";
}

std::vector<std::vector<double>> Trace::LayerLoads() const {
  const int layers = info.num_layers();
  const int experts = info.num_experts;
  std::vector<std::vector<double>> loads(layers, std::vector<double>(experts, 0.0));
  for (const TraceStep& step : steps) {
    if (step.kind == TraceKind::kCounts) {
      for (int l = 0; l < layers; ++l) {
        for (int e = 0; e < experts; ++e)
          loads[l][e] += step.counts.counts[static_cast<size_t>(l) * experts + e];
      }
      continue;
    }
    const size_t per_layer = static_cast<size_t>(step.tokens.num_tokens) * info.top_k;
    for (int l = 0; l < layers; ++l) {
      const ExpertId* ids = step.tokens.expert_ids.data() + l * per_layer;
      for (size_t i = 0; i < per_layer; ++i) {
        if (ids[i] >= 0 && ids[i] < experts) loads[l][ids[i]] += 1.0;
      }
    }
  }
  return loads;
}

int64_t Trace::TotalTokens() const {
  int64_t total = 0;
  for (const TraceStep& step : steps) {
    if (step.kind == TraceKind::kTokens) total += step.tokens.num_tokens;
  }
  return total;
}

}  // namespace grace
