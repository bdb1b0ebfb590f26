// PlacementPolicy: the interface every placement algorithm (grace's and the baselines) offers.
//
// A policy plans one MoE layer at a time from its LayerStats: which expert each physical slot
// holds (a placement row) and how each rank routes to the replicas (a LayerRouting). Layers are
// independent, so callers (offline `gracectl plan`, the online decision loop) can plan any
// subset. PlanLayer is const and keeps no state between calls: one policy object may serve
// several threads.
//
//   std::unique_ptr<PlacementPolicy> grace = *MakePlacementPolicy("grace");
//   StatusOr<LayerPlan> plan = grace->PlanLayer(stats, topology, CostParams{});
//   LayerCost cost = EvaluateLayer(stats, plan->routing, topology, CostParams{});
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/placement.h"
#include "core/status.h"
#include "core/topology.h"
#include "policy/cost_model.h"
#include "policy/layer_stats.h"

namespace grace {

struct LayerPlan {
  std::vector<ExpertId> row;  // physical_to_logical of the layer, topology.total_slots() long
  LayerRouting routing;
  std::string choice;  // why this plan, for reports ("" where the policy has no alternative)
};

class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;
  virtual std::string name() const = 0;
  virtual StatusOr<LayerPlan> PlanLayer(const LayerStats& stats, const Topology& topology,
                                        const CostParams& params) const = 0;
  // A plan that leaves experts where `current` (a placement row of the layer) has them when
  // that costs little balance, so that moving to it copies fewer weights: `slack` is the share
  // of a GPU's even load it may carry over the balanced choice to keep an expert in place
  // (0.03: 3%). FailedPrecondition where the policy only plans from scratch.
  virtual StatusOr<LayerPlan> PlanLayerNear(const LayerStats& stats, const Topology& topology,
                                            const CostParams& params,
                                            std::span<const ExpertId> current, double slack) const {
    (void)stats, (void)topology, (void)params, (void)current, (void)slack;
    return FailedPrecondition(name() + " plans only from scratch");
  }
};

// Every layer planned on its own, assembled into a Placement (validated) and its routings.
struct PlacementPlan {
  Placement placement;
  std::vector<LayerRouting> routings;
  std::vector<std::string> choices;  // LayerPlan::choice of each layer
};
StatusOr<PlacementPlan> PlanAllLayers(const PlacementPolicy& policy,
                                      std::span<const LayerStats> layers, const Topology& topology,
                                      const CostParams& params);

// Checks that a layer can be placed: experts present, a slot for each, loads finite and >= 0.
Status CheckLayerInput(const LayerStats& stats, const Topology& topology);

// "grace", "eplb", "contiguous" or "affinity", with default options.
StatusOr<std::unique_ptr<PlacementPolicy>> MakePlacementPolicy(std::string_view name);
std::vector<std::string> PlacementPolicyNames();

}  // namespace grace
