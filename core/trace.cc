#include "core/trace.h"

#include <string>

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

Status RechunkTokenSteps(int tokens_per_step, Trace* trace) {
  if (tokens_per_step < 1) {
    return InvalidArgument("tokens per step: " + std::to_string(tokens_per_step) + " (at least 1)");
  }
  const int layers = trace->info.num_layers();
  const int k = trace->info.top_k;
  if (k < 1) return InvalidArgument("a token-level trace needs top_k to cut its steps");
  bool weights = true, homes = true;
  for (const TraceStep& step : trace->steps) {
    if (step.kind != TraceKind::kTokens) {
      return InvalidArgument("only token-level steps can be cut again; this trace has counts");
    }
    weights &= !step.tokens.gate_weights.empty();
    homes &= !step.tokens.home_rank.empty();
  }
  std::vector<TraceStep> out;
  TraceStep current;
  auto flush = [&] {
    if (current.tokens.num_tokens == 0) return;
    out.push_back(std::move(current));
    current = TraceStep{};
  };
  // Per layer, the ids of the step being built; joined layer-major when it is flushed.
  std::vector<std::vector<ExpertId>> ids(layers);
  std::vector<std::vector<float>> gates(layers);
  auto close = [&] {
    for (int l = 0; l < layers; ++l) {
      current.tokens.expert_ids.insert(current.tokens.expert_ids.end(), ids[l].begin(),
                                       ids[l].end());
      if (weights) {
        current.tokens.gate_weights.insert(current.tokens.gate_weights.end(), gates[l].begin(),
                                           gates[l].end());
      }
      ids[l].clear();
      gates[l].clear();
    }
    flush();
  };
  for (const TraceStep& step : trace->steps) {
    const TokenBatch& b = step.tokens;
    for (int t = 0; t < b.num_tokens; ++t) {
      for (int l = 0; l < layers; ++l) {
        const size_t at = (static_cast<size_t>(l) * b.num_tokens + t) * k;
        ids[l].insert(ids[l].end(), b.expert_ids.begin() + at, b.expert_ids.begin() + at + k);
        if (weights) {
          gates[l].insert(gates[l].end(), b.gate_weights.begin() + at,
                          b.gate_weights.begin() + at + k);
        }
      }
      if (homes) current.tokens.home_rank.push_back(b.home_rank[t]);
      if (++current.tokens.num_tokens == tokens_per_step) close();
    }
  }
  close();
  trace->steps = std::move(out);
  return Status::Ok();
}

}  // namespace grace
