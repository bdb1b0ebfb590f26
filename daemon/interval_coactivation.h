// IntervalCoactivation: the co-activation pairs of one control interval, summed per distinct
// (layer, a, b) as the agents' load reports arrive, so the controller observes each pair once
// however many agents sent it: at 125 agents x 58 layers x 512 pairs a second that is the
// difference between 3.7 million pair updates an interval and at most one per distinct pair.
//
// The agents' top pairs overlap (they serve one model), so the distinct pairs are few next to
// the layers x E (E - 1) / 2 possible ones: they are found through an open-addressing hash table
// sized to them (a power of two, 2 to 4 times their count, 12 bytes a slot: under 1.5 MB for
// 30,000 distinct pairs), which stays in cache where a dense index over every possible pair
// (7.6 MB at 58 x 256) missed on nearly every update. Memory: that table and the pairs.
//
// Thread contract: none of its own; the control loop calls it under its mutex.
#pragma once

#include <cstdint>
#include <vector>

#include "policy/online_controller.h"

namespace grace {

class IntervalCoactivation {
 public:
  // Adds `count` to pair {a, b} of layer `layer_index` (a != b).
  void Add(int layer_index, ExpertId a, ExpertId b, double count);
  // The interval's pairs (a < b) in the order first seen, and a fresh interval.
  std::vector<CoactivationPair> Take();

 private:
  void Grow();
  // The slot of `key`, or the empty slot where it goes.
  size_t Find(uint64_t key) const;

  std::vector<uint64_t> keys_;      // [slot] key + 1, 0 when empty; a power of two in size
  std::vector<int32_t> positions_;  // [slot] index into pairs_
  std::vector<CoactivationPair> pairs_;
  int shift_ = 64;  // 64 - log2(keys_.size())
};

}  // namespace grace
