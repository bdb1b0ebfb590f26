// Locality-aware routing weights (DESIGN.md, method step 3).
//
// For each rank and expert: the replica on this GPU if there is one; else the replicas on this
// node; else the remote replicas. Within that tier, weights are inversely proportional to each
// replica's GPU's predicted load. Predicted loads depend on the weights, so the rule is applied
// in rounds, each compounding a damped inverse-load factor per GPU, with tokens spread evenly
// over home ranks: the weights converge to where predicted loads are as even as the tiers allow.
// Pure functions, safe from any thread.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "core/placement.h"
#include "core/routing_table.h"
#include "core/topology.h"
#include "policy/cost_model.h"

namespace grace {

// Routing of one layer under the locality rule. `row` is the placement row, `load` the
// predicted (token, expert) load per expert.
LayerRouting LocalityRouting(std::span<const ExpertId> row, std::span<const double> load,
                             const Topology& topology, int iterations = 16);

// The per-rank loads LocalityRouting's weights predict, without building the routing: cheap
// enough to compare candidate placements.
std::vector<double> LocalityRankLoads(std::span<const ExpertId> row, std::span<const double> load,
                                      const Topology& topology, int iterations = 16);

// Routing that ignores locality: every replica of an expert gets the same share from every
// rank (what vLLM and SGLang do for EPLB's replicas).
LayerRouting UniformRouting(std::span<const ExpertId> row, int num_experts,
                            const Topology& topology);

// Freezes a placement and its per-layer routings (locality routings: their weight outside the
// best tier must be zero) into a RoutingTable.
StatusOr<std::shared_ptr<const RoutingTable>> BuildRoutingTable(
    Epoch epoch, const Topology& topology, const Placement& placement,
    std::span<const LayerRouting> routings);

}  // namespace grace
