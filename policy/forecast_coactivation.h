// DecayedCoactivation: per-layer expert co-activation counts that forget geometrically, the
// affinity signal online planning regroups experts from.
//
// Counts from interval t weigh decay^(now - t). Decay is applied lazily (one growing scale for
// every stored count), so NextInterval() is O(1) and adding an interval costs only the pairs it
// brings, not E x E per layer.
//
//   DecayedCoactivation co(layers, experts, 0.9);
//   co.NextInterval();
//   co.AddTokens(layer, ids, top_k);
//   Eigen::MatrixXd affinity = co.Layer(layer);
//
// Thread contract: not thread-safe; one control thread. Pure computation.
#pragma once

#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/ids.h"

namespace grace {

class DecayedCoactivation {
 public:
  DecayedCoactivation(int num_layers, int num_experts, double decay);

  int num_layers() const { return num_layers_; }
  int num_experts() const { return num_experts_; }

  // Ages everything seen so far by one interval.
  void NextInterval();
  // Adds one interval's co-activation counts of `layer` (E x E, row-major).
  void AddMatrix(int layer, std::span<const double> matrix);
  // Adds tokens' top-k ids of `layer` (num_tokens * top_k): every pair of distinct experts
  // chosen by one token counts once in both orders. Ids outside [0, E) are ignored.
  void AddTokens(int layer, std::span<const ExpertId> ids, int top_k);
  // Adds `count` co-activations of experts a and b (a != b, both in [0, E)) in both orders; for
  // sources that record co-activation pairs rather than tokens.
  void AddPair(int layer, ExpertId a, ExpertId b, double count);
  // The decayed counts of `layer` (E x E, symmetric when fed symmetric data).
  Eigen::MatrixXd Layer(int layer) const;
  // Forgets `layer` (after a workload change).
  void ResetLayer(int layer);

 private:
  double* Block(int layer) { return counts_.data() + static_cast<size_t>(layer) * block_; }
  void Renormalise();

  int num_layers_;
  int num_experts_;
  double decay_;
  size_t block_;
  double scale_ = 1.0;  // stored = true count * scale_; grows by 1 / decay per interval
  std::vector<double> counts_;
};

}  // namespace grace
