#include "kernels/load_stats.h"

#include <algorithm>

namespace grace {

LoadStats::LoadStats(int num_layers, int num_experts, int sample_every)
    : num_experts_(num_experts), sample_every_(std::max(1, sample_every)) {
  load_.assign(num_layers, std::vector<int64_t>(num_experts, 0));
  coactivation_.assign(num_layers,
                       std::vector<int64_t>(static_cast<size_t>(num_experts) * num_experts, 0));
}

void LoadStats::Count(int layer_index, const int32_t* expert_ids, const int64_t* token_ids,
                      int tokens, int top_k) {
  int64_t* load = load_[layer_index].data();
  int64_t* co = coactivation_[layer_index].data();
  for (int t = 0; t < tokens; ++t) {
    const int32_t* ids = expert_ids + static_cast<int64_t>(t) * top_k;
    for (int k = 0; k < top_k; ++k) ++load[ids[k]];
    if (token_ids[t] % sample_every_ != 0) continue;
    for (int a = 0; a < top_k; ++a) {
      for (int b = a + 1; b < top_k; ++b) {
        ++co[static_cast<int64_t>(ids[a]) * num_experts_ + ids[b]];
        ++co[static_cast<int64_t>(ids[b]) * num_experts_ + ids[a]];
      }
    }
  }
}

void LoadStats::Reset() {
  for (auto& v : load_) std::fill(v.begin(), v.end(), 0);
  for (auto& v : coactivation_) std::fill(v.begin(), v.end(), 0);
}

}  // namespace grace
