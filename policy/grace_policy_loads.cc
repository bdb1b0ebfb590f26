// GracePolicy's plan of a layer from its load alone (count-only sources, online forecasts
// without tokens): how many copies each expert gets, and where they go. See grace_policy.h.
#include <algorithm>
#include <limits>
#include <numeric>

#include "policy/eplb.h"
#include "policy/grace_policy.h"
#include "policy/locality_routing.h"

namespace grace {

namespace {

// Under locality routing a node's tokens stay on its own copies, so with c >= nodes copies an
// expert's hottest copy carries load / (nodes * fewest copies on a node); below that, load / c.
double CopyPeak(const LayerStats& stats, const Topology& topo, ExpertId e, int c) {
  return c < topo.nodes ? stats.load[e] / c : stats.load[e] / (topo.nodes * (c / topo.nodes));
}

// Fills the `spare` slots left by `copies`, one copy at a time to the expert whose hottest copy
// carries the most load.
void AddCopiesForBalance(const LayerStats& stats, const Topology& topo, int spare,
                         std::vector<int>* copies) {
  const int experts = stats.num_experts();
  for (; spare > 0; --spare) {
    ExpertId best = 0;
    for (ExpertId e = 1; e < experts; ++e) {
      if (CopyPeak(stats, topo, e, (*copies)[e]) > CopyPeak(stats, topo, best, (*copies)[best]))
        best = e;
    }
    if (stats.load[best] <= 0) break;
    ++(*copies)[best];
  }
}

// Copies per expert for balance alone.
std::vector<int> BalanceCopies(const LayerStats& stats, const Topology& topo) {
  std::vector<int> copies(stats.num_experts(), 1);
  AddCopiesForBalance(stats, topo, topo.total_slots() - stats.num_experts(), &copies);
  return copies;
}

// Copies per expert that first put every expert on every node, hottest first while slots last
// (an expert with no copy on a node sends that node's tokens for it across nodes, which on a slow
// network can cost more than any imbalance), then the rest for balance.
std::vector<int> NodeCoveringCopies(const LayerStats& stats, const Topology& topo) {
  const int experts = stats.num_experts();
  std::vector<int> copies(experts, 1);
  int spare = topo.total_slots() - experts;
  std::vector<ExpertId> order(experts);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](ExpertId a, ExpertId b) { return stats.load[a] > stats.load[b]; });
  for (int c = 2; c <= topo.nodes && spare > 0; ++c) {
    for (ExpertId e : order) {
      if (spare == 0 || stats.load[e] <= 0) break;
      ++copies[e];
      --spare;
    }
  }
  AddCopiesForBalance(stats, topo, spare, &copies);
  return copies;
}

// Packs `copies` of each expert onto the slots: onto nodes, then onto each node's GPUs (see
// PlanFromLoads; `near` and `slack` as in PlanLayerNear).
StatusOr<std::vector<ExpertId>> PackCopies(const LayerStats& stats, const Topology& topo,
                                           const std::vector<int>& copies,
                                           std::span<const ExpertId> near, double slack) {
  const int experts = stats.num_experts();
  const int ranks = topo.ranks();
  const int nodes = topo.nodes;
  const int slots = topo.slots_per_gpu;
  const int node_slots = slots * topo.gpus_per_node;
  auto copy_peak = [&](ExpertId e, int c) { return CopyPeak(stats, topo, e, c); };
  struct Item {
    ExpertId expert;
    double load;
  };
  // 1. Copies onto nodes, hottest expert first: as even per node as the count allows, the odd
  // ones on the least loaded nodes with room.
  std::vector<ExpertId> order(experts);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](ExpertId a, ExpertId b) {
    return copy_peak(a, copies[a]) > copy_peak(b, copies[b]);
  });
  // Near a current row: where each expert is now, and how far over the even share a node or GPU
  // may go to keep an expert where it is (a move costs a weight copy; the swaps below still
  // lower the hottest GPU).
  std::vector<char> near_node, near_rank;
  double node_slack = 0, rank_slack = 0;
  if (!near.empty()) {
    near_node.assign(static_cast<size_t>(nodes) * experts, 0);
    near_rank.assign(static_cast<size_t>(ranks) * experts, 0);
    for (SlotId s = 0; s < static_cast<SlotId>(near.size()); ++s) {
      const ExpertId e = near[s];
      if (e == kEmptySlot || e >= experts) continue;
      near_node[static_cast<size_t>(topo.NodeOfSlot(s)) * experts + e] = 1;
      near_rank[static_cast<size_t>(topo.RankOfSlot(s)) * experts + e] = 1;
    }
    const double total = std::accumulate(stats.load.begin(), stats.load.end(), 0.0);
    node_slack = slack * total / nodes;
    rank_slack = slack * total / ranks;
  }
  std::vector<double> node_load(nodes, 0.0);
  std::vector<int> node_used(nodes, 0);
  std::vector<std::vector<Item>> node_items(nodes);
  std::vector<int> per_node(nodes);
  std::vector<NodeId> by_load(nodes);
  for (ExpertId e : order) {
    const int c = copies[e];
    std::iota(by_load.begin(), by_load.end(), 0);
    std::stable_sort(by_load.begin(), by_load.end(), [&](NodeId a, NodeId b) {
      const bool room_a = node_used[a] < node_slots, room_b = node_used[b] < node_slots;
      return room_a != room_b ? room_a : node_load[a] < node_load[b];
    });
    if (!near.empty()) {
      // The odd copies stay on nodes that hold the expert now when those are within the slack
      // of the least loaded node with room.
      const double floor_load = node_load[by_load[0]];
      std::stable_partition(by_load.begin(), by_load.end(), [&](NodeId n) {
        return node_used[n] < node_slots && near_node[static_cast<size_t>(n) * experts + e] &&
               node_load[n] <= floor_load + node_slack;
      });
    }
    std::fill(per_node.begin(), per_node.end(), c / nodes);
    for (int i = 0; i < c % nodes; ++i) ++per_node[by_load[i]];
    // A node without room hands its copies to the least loaded nodes that have some.
    for (NodeId n = 0; n < nodes; ++n) {
      while (per_node[n] > 0 && node_used[n] + per_node[n] > node_slots) {
        --per_node[n];
        for (NodeId m : by_load) {
          if (node_used[m] + per_node[m] < node_slots) {
            ++per_node[m];
            break;
          }
        }
      }
    }
    int placed_nodes = 0;
    for (NodeId n = 0; n < nodes; ++n) placed_nodes += per_node[n] > 0;
    for (NodeId n = 0; n < nodes; ++n) {
      if (per_node[n] == 0) continue;
      // This node's own tokens, plus an even part of the tokens of nodes without a copy.
      const double node_share =
          stats.load[e] / nodes * (1.0 + static_cast<double>(nodes - placed_nodes) / placed_nodes);
      for (int k = 0; k < per_node[n]; ++k) {
        node_items[n].push_back({e, node_share / per_node[n]});
      }
      node_load[n] += node_share;
      node_used[n] += per_node[n];
    }
  }
  // 2. Inside each node, heaviest first onto the lightest GPU with room, then swaps that lower
  // the node's hottest GPU.
  std::vector<std::vector<Item>> on_rank(ranks);
  std::vector<double> rank_load(ranks, 0.0);
  std::vector<std::vector<char>> rank_has(ranks, std::vector<char>(experts, 0));
  for (NodeId n = 0; n < nodes; ++n) {
    std::vector<Item>& items = node_items[n];
    std::stable_sort(items.begin(), items.end(),
                     [](const Item& a, const Item& b) { return a.load > b.load; });
    const RankId first = n * topo.gpus_per_node, last = first + topo.gpus_per_node;
    for (const Item& item : items) {
      RankId best = -1;
      for (RankId g = first; g < last; ++g) {
        if (static_cast<int>(on_rank[g].size()) >= slots || rank_has[g][item.expert]) continue;
        if (best < 0 || rank_load[g] < rank_load[best]) best = g;
      }
      if (best >= 0 && !near.empty()) {
        // The GPU that holds the expert now, when within the slack of the lightest.
        for (RankId g = first; g < last; ++g) {
          if (static_cast<int>(on_rank[g].size()) >= slots || rank_has[g][item.expert]) continue;
          if (near_rank[static_cast<size_t>(g) * experts + item.expert] &&
              rank_load[g] <= rank_load[best] + rank_slack) {
            best = g;
            break;
          }
        }
      }
      if (best < 0) {  // only copies of one expert left for the free slots: any room will do
        for (RankId g = first; g < last && best < 0; ++g) {
          if (static_cast<int>(on_rank[g].size()) < slots) best = g;
        }
      }
      if (best < 0) return Internal("grace packing: node " + std::to_string(n) + " overfull");
      on_rank[best].push_back(item);
      rank_has[best][item.expert] = 1;
      rank_load[best] += item.load;
    }
    for (int iter = 0; iter < 2 * topo.gpus_per_node * slots; ++iter) {
      RankId hot = first;
      for (RankId g = first; g < last; ++g) {
        if (rank_load[g] > rank_load[hot]) hot = g;
      }
      double best_peak = rank_load[hot];
      RankId best_g = -1;
      int best_i = -1, best_j = -1;
      for (RankId g = first; g < last; ++g) {
        if (g == hot) continue;
        for (int i = 0; i < static_cast<int>(on_rank[hot].size()); ++i) {
          for (int j = 0; j < static_cast<int>(on_rank[g].size()); ++j) {
            const Item& a = on_rank[hot][i];
            const Item& b = on_rank[g][j];
            if (a.load <= b.load) continue;
            const double peak =
                std::max(rank_load[hot] - a.load + b.load, rank_load[g] + a.load - b.load);
            if (peak >= best_peak - 1e-12) continue;
            if (rank_has[g][a.expert] || rank_has[hot][b.expert]) continue;
            best_peak = peak, best_g = g, best_i = i, best_j = j;
          }
        }
      }
      if (best_g < 0) break;
      Item& a = on_rank[hot][best_i];
      Item& b = on_rank[best_g][best_j];
      rank_has[hot][a.expert] = rank_has[best_g][b.expert] = 0;
      rank_has[hot][b.expert] = rank_has[best_g][a.expert] = 1;
      rank_load[hot] += b.load - a.load;
      rank_load[best_g] += a.load - b.load;
      std::swap(a, b);
    }
  }
  std::vector<ExpertId> row(topo.total_slots(), kEmptySlot);
  for (RankId g = 0; g < ranks; ++g) {
    for (size_t i = 0; i < on_rank[g].size(); ++i) row[g * slots + i] = on_rank[g][i].expert;
  }
  return row;
}

}  // namespace

StatusOr<LayerPlan> GracePolicy::PlanFromLoads(const LayerStats& stats, const Topology& topo,
                                               const CostParams& params,
                                               std::span<const ExpertId> near, double slack) const {
  // Candidates: copies for balance, copies that cover the nodes first, and EPLB's packing under
  // the same routing rule (not near a current row, where EPLB's packing would ignore where the
  // experts are). A candidate whose hottest GPU is hotter than under EPLB's packing is not taken:
  // grace trades no balance against the baseline for traffic. Of the rest, the lowest modeled
  // layer time wins.
  std::vector<std::vector<ExpertId>> rows;
  const std::vector<int> balance = BalanceCopies(stats, topo);
  GRACE_ASSIGN_OR_RETURN(std::vector<ExpertId> row, PackCopies(stats, topo, balance, near, slack));
  rows.push_back(std::move(row));
  const std::vector<int> covering = NodeCoveringCopies(stats, topo);
  if (covering != balance) {
    GRACE_ASSIGN_OR_RETURN(row, PackCopies(stats, topo, covering, near, slack));
    rows.push_back(std::move(row));
  }
  StatusOr<std::vector<std::vector<ExpertId>>> eplb =
      EplbRebalance({stats.load}, topo.total_slots(), 1, topo.nodes, topo.ranks());
  const size_t eplb_index = rows.size();
  if (eplb.ok()) rows.push_back(std::move((*eplb)[0]));
  struct Scored {
    LayerRouting routing;
    LayerCost cost;
  };
  std::vector<Scored> scored;
  for (const std::vector<ExpertId>& candidate : rows) {
    LayerRouting routing =
        LocalityRouting(candidate, stats.load, topo, options_.routing_iterations);
    LayerCost cost = EvaluateLayer(stats, routing, topo, params);
    scored.push_back({std::move(routing), std::move(cost)});
  }
  const double ceiling = eplb.ok() ? scored[eplb_index].cost.imbalance * (1 + 1e-9)
                                   : std::numeric_limits<double>::infinity();
  const size_t candidates = near.empty() ? rows.size() : eplb_index;
  size_t best = 0;
  auto better = [&](size_t a, size_t b) {  // a before b
    const bool a_in = scored[a].cost.imbalance <= ceiling,
               b_in = scored[b].cost.imbalance <= ceiling;
    if (a_in != b_in) return a_in;
    if (!a_in) return scored[a].cost.imbalance < scored[b].cost.imbalance;
    return scored[a].cost.layer_ms < scored[b].cost.layer_ms * (1 - 1e-9);
  };
  for (size_t i = 1; i < candidates; ++i) {
    if (better(i, best)) best = i;
  }
  LayerPlan plan;
  plan.row = std::move(rows[best]);
  plan.routing = std::move(scored[best].routing);
  return plan;
}

}  // namespace grace
