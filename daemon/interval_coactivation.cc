#include "daemon/interval_coactivation.h"

#include <algorithm>
#include <bit>
#include <utility>

namespace grace {
namespace {

uint64_t KeyOf(int layer_index, ExpertId a, ExpertId b) {
  return (static_cast<uint64_t>(layer_index) << 40 | static_cast<uint64_t>(a) << 20 |
          static_cast<uint64_t>(b)) +
         1;
}

}  // namespace

size_t IntervalCoactivation::Find(uint64_t key) const {
  const size_t mask = keys_.size() - 1;
  size_t slot = (key * 0x9E3779B97F4A7C15ull) >> shift_;  // Fibonacci hashing: the high bits
  while (keys_[slot] != 0 && keys_[slot] != key) slot = (slot + 1) & mask;
  return slot;
}

void IntervalCoactivation::Grow() {
  keys_.assign(std::max<size_t>(1024, keys_.size() * 2), 0);
  shift_ = 64 - std::countr_zero(keys_.size());
  positions_.resize(keys_.size());
  for (size_t i = 0; i < pairs_.size(); ++i) {
    const CoactivationPair& p = pairs_[i];
    const uint64_t key = KeyOf(p.layer_index, p.a, p.b);
    const size_t slot = Find(key);
    keys_[slot] = key;
    positions_[slot] = static_cast<int32_t>(i);
  }
}

void IntervalCoactivation::Add(int layer_index, ExpertId a, ExpertId b, double count) {
  if (a > b) std::swap(a, b);
  if (2 * (pairs_.size() + 1) > keys_.size()) Grow();  // load factor at most 1/2
  const uint64_t key = KeyOf(layer_index, a, b);
  const size_t slot = Find(key);
  if (keys_[slot] == 0) {
    keys_[slot] = key;
    positions_[slot] = static_cast<int32_t>(pairs_.size());
    pairs_.push_back({layer_index, a, b, 0.0});
  }
  pairs_[positions_[slot]].count += count;
}

std::vector<CoactivationPair> IntervalCoactivation::Take() {
  std::fill(keys_.begin(), keys_.end(), 0);  // the table keeps its size for the next interval
  return std::exchange(pairs_, {});
}

}  // namespace grace
