// PlacementObjective: the number grace's search minimises, from a layer's traffic.
//
// The modeled layer time (cost_model.h), plus a share of the same time computed with means in
// place of maxima (so moves that relieve a non-critical rank or node still count and local
// search does not stall on plateaus), plus an optional cost per remote send, plus a penalty once
// max/mean GPU load exceeds a tolerance. A plain value; Score is a pure function.
#pragma once

#include "core/topology.h"
#include "policy/cost_model.h"

namespace grace {

struct PlacementObjective {
  double mean_weight = 0.5;
  double max_imbalance = 1.10;  // tolerated max/mean GPU load
  // Penalty per unit of imbalance above max_imbalance, in units of `reference_ms`.
  double imbalance_penalty = 10.0;
  double reference_ms = 1.0;
  // Cost of one remote send (any GPU other than home), in units of the mean time one cross-node
  // send adds. Intra-node links are so fast that the modeled time barely sees remote sends;
  // this keeps the GPU-level grouping inside a node from being left to chance.
  double remote_send_weight = 0.0;

  double Score(const LayerTraffic& traffic, const Topology& topology,
               const CostParams& params) const;
};

}  // namespace grace
