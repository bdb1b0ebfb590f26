// IntervalCoactivation: the co-activation pairs of one control interval, summed per distinct
// (layer, a, b) as the agents' load reports arrive, so the controller observes each pair once
// however many agents sent it: at 125 agents x 58 layers x 512 pairs a second that is the
// difference between 3.7 million pair updates an interval and at most one per distinct pair.
// Memory: one int32 per possible pair, layers x E (E - 1) / 2 (7.6 MB at 58 x 256), plus the
// interval's distinct pairs.
//
// Thread contract: none of its own; the control loop calls it under its mutex.
#pragma once

#include <vector>

#include "policy/online_controller.h"

namespace grace {

class IntervalCoactivation {
 public:
  IntervalCoactivation(int num_layers, int num_experts);

  // Adds `count` to pair {a, b} of layer `layer_index` (a != b, both in range).
  void Add(int layer_index, ExpertId a, ExpertId b, double count);
  // The interval's pairs (a < b), and a fresh interval.
  std::vector<CoactivationPair> Take();

 private:
  size_t Index(int layer_index, ExpertId a, ExpertId b) const;

  int experts_;
  size_t per_layer_;
  std::vector<int32_t> position_;  // [layer][pair] -> index into pairs_, -1 when absent
  std::vector<CoactivationPair> pairs_;
};

}  // namespace grace
