#include "policy/eplb.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "policy/locality_routing.h"

namespace grace {

namespace {

struct Packing {
  std::vector<int> pack;     // per item
  std::vector<int> rank_in;  // position inside its pack
};

// Heaviest item first onto the lightest pack that still has room; equal item count per pack.
Packing BalancedPacking(std::span<const double> weight, int num_packs) {
  const int n = static_cast<int>(weight.size());
  const int per_pack = n / num_packs;
  Packing out{std::vector<int>(n), std::vector<int>(n, 0)};
  if (per_pack == 1) {
    std::iota(out.pack.begin(), out.pack.end(), 0);
    return out;
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return weight[a] > weight[b]; });
  std::vector<double> pack_weight(num_packs, 0.0);
  std::vector<int> pack_items(num_packs, 0);
  for (int item : order) {
    int best = -1;
    for (int p = 0; p < num_packs; ++p) {
      if (pack_items[p] < per_pack && (best < 0 || pack_weight[p] < pack_weight[best])) best = p;
    }
    out.pack[item] = best;
    out.rank_in[item] = pack_items[best]++;
    pack_weight[best] += weight[item];
  }
  return out;
}

struct Replication {
  std::vector<int> phy_to_log;  // num_physical
  std::vector<int> count;       // replicas per logical
};

// Each extra slot goes to the expert with the highest load per replica (first on ties).
Replication ReplicateExperts(std::span<const double> weight, int num_physical) {
  const int n = static_cast<int>(weight.size());
  Replication out{std::vector<int>(num_physical), std::vector<int>(n, 1)};
  std::iota(out.phy_to_log.begin(), out.phy_to_log.begin() + n, 0);
  for (int i = n; i < num_physical; ++i) {
    int best = 0;
    for (int e = 1; e < n; ++e) {
      if (weight[e] / out.count[e] > weight[best] / out.count[best]) best = e;
    }
    out.phy_to_log[i] = best;
    ++out.count[best];
  }
  return out;
}

std::vector<ExpertId> RebalanceOneLayer(std::span<const double> weight, int num_physical,
                                        int num_groups, int num_nodes, int num_gpus) {
  const int experts = static_cast<int>(weight.size());
  const int group_size = experts / num_groups;
  const int groups_per_node = num_groups / num_nodes;
  const int experts_per_node = experts / num_nodes;
  const int phy_per_node = num_physical / num_nodes;
  const int phy_per_gpu = num_physical / num_gpus;
  const int gpus_per_node = num_gpus / num_nodes;

  // 1. Groups onto nodes. Node-major "middle" ids: node n holds [n * experts_per_node, ...).
  std::vector<double> group_load(num_groups, 0.0);
  for (int e = 0; e < experts; ++e) group_load[e / group_size] += weight[e];
  const Packing groups = BalancedPacking(group_load, num_nodes);
  std::vector<int> mid_to_log(experts);
  for (int e = 0; e < experts; ++e) {
    const int g = e / group_size;
    const int mid =
        (groups.pack[g] * groups_per_node + groups.rank_in[g]) * group_size + e % group_size;
    mid_to_log[mid] = e;
  }
  std::vector<ExpertId> row(num_physical);
  for (int n = 0; n < num_nodes; ++n) {
    // 2. Replicate inside the node.
    std::vector<double> node_load(experts_per_node);
    for (int i = 0; i < experts_per_node; ++i) {
      node_load[i] = weight[mid_to_log[n * experts_per_node + i]];
    }
    const Replication rep = ReplicateExperts(node_load, phy_per_node);
    // 3. Replicas onto the node's GPUs, equal slot counts.
    std::vector<double> phy_load(phy_per_node);
    for (int p = 0; p < phy_per_node; ++p) {
      phy_load[p] = node_load[rep.phy_to_log[p]] / rep.count[rep.phy_to_log[p]];
    }
    const Packing gpus = BalancedPacking(phy_load, gpus_per_node);
    for (int p = 0; p < phy_per_node; ++p) {
      const int slot = n * phy_per_node + gpus.pack[p] * phy_per_gpu + gpus.rank_in[p];
      row[slot] = mid_to_log[n * experts_per_node + rep.phy_to_log[p]];
    }
  }
  return row;
}

}  // namespace

StatusOr<std::vector<std::vector<ExpertId>>> EplbRebalance(
    const std::vector<std::vector<double>>& loads, int num_physical, int num_groups, int num_nodes,
    int num_gpus) {
  std::vector<std::vector<ExpertId>> rows;
  for (const std::vector<double>& w : loads) {
    const int experts = static_cast<int>(w.size());
    if (experts == 0 || num_physical < experts || num_gpus <= 0 || num_nodes <= 0 ||
        num_physical % num_gpus != 0 || num_gpus % num_nodes != 0) {
      return InvalidArgument(
          "EPLB needs experts <= slots, slots divisible by GPUs and GPUs by "
          "nodes (" +
          std::to_string(experts) + " experts, " + std::to_string(num_physical) + " slots, " +
          std::to_string(num_gpus) + " GPUs, " + std::to_string(num_nodes) + " nodes)");
    }
    const bool hierarchical = num_groups > 0 && num_groups % num_nodes == 0 &&
                              experts % num_groups == 0 && num_physical % num_nodes == 0;
    rows.push_back(hierarchical
                       ? RebalanceOneLayer(w, num_physical, num_groups, num_nodes, num_gpus)
                       : RebalanceOneLayer(w, num_physical, 1, 1, num_gpus));
  }
  return rows;
}

StatusOr<LayerPlan> EplbPolicy::PlanLayer(const LayerStats& stats, const Topology& topology,
                                          const CostParams& /*params*/) const {
  GRACE_RETURN_IF_ERROR(CheckLayerInput(stats, topology));
  GRACE_ASSIGN_OR_RETURN(std::vector<std::vector<ExpertId>> rows,
                         EplbRebalance({stats.load}, topology.total_slots(), options_.num_groups,
                                       topology.nodes, topology.ranks()));
  LayerPlan plan;
  plan.row = std::move(rows[0]);
  plan.routing = options_.locality_routing
                     ? LocalityRouting(plan.row, stats.load, topology)
                     : UniformRouting(plan.row, stats.num_experts(), topology);
  return plan;
}

}  // namespace grace
