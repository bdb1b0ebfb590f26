// LoadStats: per-expert load counts and sampled co-activation of one rank, dense, for a
// single thread (the agent's workers count what they stream to the daemon in
// agent/live_counters.h, with the same sampling rule).
//
// Count() adds every (token, expert) assignment of a layer to its expert's load; every
// `sample_every`-th token (by global token index) also adds each pair of its top-k experts to
// the layer's co-activation matrix (symmetric, [E x E]). Sampling keeps the cost at
// O(k^2 / sample_every) per token. CUDA twin: kernels/cuda/count_loads.cu.
//
// Owned by one data-path thread; the agent swaps or copies it out between steps.
#pragma once

#include <cstdint>
#include <vector>

namespace grace {

class LoadStats {
 public:
  LoadStats(int num_layers, int num_experts, int sample_every);

  void Count(int layer_index, const int32_t* expert_ids, const int64_t* token_ids, int tokens,
             int top_k);
  void Reset();

  int num_experts() const { return num_experts_; }
  // [layer][expert]
  const std::vector<std::vector<int64_t>>& load() const { return load_; }
  // [layer][a * E + b]
  const std::vector<std::vector<int64_t>>& coactivation() const { return coactivation_; }

 private:
  int num_experts_;
  int sample_every_;
  std::vector<std::vector<int64_t>> load_;
  std::vector<std::vector<int64_t>> coactivation_;
};

}  // namespace grace
