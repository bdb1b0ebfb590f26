#include "daemon/interval_coactivation.h"

#include <algorithm>
#include <utility>

namespace grace {

IntervalCoactivation::IntervalCoactivation(int num_layers, int num_experts)
    : experts_(num_experts),
      per_layer_(static_cast<size_t>(num_experts) * (num_experts - 1) / 2),
      position_(num_layers * per_layer_, -1) {}

size_t IntervalCoactivation::Index(int layer_index, ExpertId a, ExpertId b) const {
  return layer_index * per_layer_ + static_cast<size_t>(a) * experts_ -
         static_cast<size_t>(a) * (a + 1) / 2 + (b - a - 1);
}

void IntervalCoactivation::Add(int layer_index, ExpertId a, ExpertId b, double count) {
  if (a > b) std::swap(a, b);
  int32_t& at = position_[Index(layer_index, a, b)];
  if (at < 0) {
    at = static_cast<int32_t>(pairs_.size());
    pairs_.push_back({layer_index, a, b, 0.0});
  }
  pairs_[at].count += count;
}

std::vector<CoactivationPair> IntervalCoactivation::Take() {
  for (const CoactivationPair& p : pairs_) position_[Index(p.layer_index, p.a, p.b)] = -1;
  return std::exchange(pairs_, {});
}

}  // namespace grace
