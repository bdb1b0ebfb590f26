#include "policy/cost_model.h"

#include <algorithm>
#include <numeric>

namespace grace {

LayerRouting::LayerRouting(std::span<const ExpertId> row, int num_experts, int ranks)
    : ranks_(ranks), begin_(num_experts + 1, 0) {
  for (ExpertId e : row) {
    if (e != kEmptySlot) ++begin_[e + 1];
  }
  std::partial_sum(begin_.begin(), begin_.end(), begin_.begin());
  slots_.resize(begin_.back());
  std::vector<int> fill(begin_.begin(), begin_.end() - 1);
  for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
    if (row[s] != kEmptySlot) slots_[fill[row[s]]++] = s;
  }
  prob_.assign(static_cast<size_t>(ranks) * slots_.size(), 0.0);
}

void AddGpuSend(const Topology& topology, RankId home, RankId g, double tokens,
                LayerTraffic* traffic) {
  if (g == home) return;
  traffic->remote_sends += tokens;
  const int per_node = topology.gpus_per_node;
  const NodeId n = topology.NodeOfRank(g);
  const RankId from = n == topology.NodeOfRank(home) ? home : n * per_node + home % per_node;
  if (g == from) return;  // the peer GPU itself: the NIC transfer delivered it
  traffic->intra_send[from] += tokens;
  traffic->intra_recv[g] += tokens;
}

void AddNodeSend(const Topology& topology, RankId home, NodeId n, double tokens,
                 LayerTraffic* traffic) {
  const NodeId home_node = topology.NodeOfRank(home);
  if (n == home_node) return;
  traffic->cross_node_sends += tokens;
  traffic->inter_out[home_node] += tokens;
  traffic->inter_in[n] += tokens;
}

LayerTraffic EmptyTraffic(const Topology& topology) {
  LayerTraffic t;
  t.rank_load.assign(topology.ranks(), 0.0);
  t.intra_send.assign(topology.ranks(), 0.0);
  t.intra_recv.assign(topology.ranks(), 0.0);
  t.inter_out.assign(topology.nodes, 0.0);
  t.inter_in.assign(topology.nodes, 0.0);
  return t;
}

LayerCost CostFromTraffic(const LayerTraffic& traffic, const Topology& topology,
                          const CostParams& params) {
  LayerCost c;
  c.tokens = traffic.tokens;
  c.rank_load = traffic.rank_load;
  if (traffic.tokens > 0) {
    c.remote_sends_per_token = traffic.remote_sends / traffic.tokens;
    c.cross_node_sends_per_token = traffic.cross_node_sends / traffic.tokens;
  }
  const double max_load = *std::max_element(c.rank_load.begin(), c.rank_load.end());
  const double mean_load =
      std::accumulate(c.rank_load.begin(), c.rank_load.end(), 0.0) / c.rank_load.size();
  c.imbalance = mean_load > 0 ? max_load / mean_load : 1.0;
  const double flops_per_s = params.gpu_tflops * 1e12 * params.compute_efficiency;
  c.compute_ms = max_load * params.flops_per_token_expert() / flops_per_s * 1e3;
  const double bytes = params.token_bytes();
  for (RankId r = 0; r < topology.ranks(); ++r) {
    const double tokens = std::max(traffic.intra_send[r], traffic.intra_recv[r]);
    if (tokens <= 0) continue;
    c.intra_ms = std::max(c.intra_ms, topology.intra_node_latency_us * 1e-3 +
                                          tokens * bytes / topology.intra_node_bytes_per_s() * 1e3);
  }
  for (NodeId n = 0; n < topology.nodes; ++n) {
    const double tokens = std::max(traffic.inter_out[n], traffic.inter_in[n]);
    if (tokens <= 0) continue;
    c.inter_ms = std::max(c.inter_ms, topology.inter_node_latency_us * 1e-3 +
                                          tokens * bytes / topology.inter_node_bytes_per_s() * 1e3);
  }
  c.layer_ms = c.compute_ms + 2.0 * (c.intra_ms + c.inter_ms);
  return c;
}

namespace {

// Accumulates the traffic of tokens from one home rank, each using expert e with probability
// use[e] (1 for a recorded token), `weight` tokens in all. Scratch arrays are left reset.
class TokenAccumulator {
 public:
  TokenAccumulator(const Topology& topology, LayerTraffic* traffic)
      : topo_(topology),
        traffic_(traffic),
        gpu_miss_(topology.ranks(), 1.0),
        node_miss_(topology.nodes, 1.0),
        node_sum_(topology.nodes, 0.0),
        gpu_listed_(topology.ranks(), 0),
        node_listed_(topology.nodes, 0) {}

  // Adds one expert of the current token, used with probability `use`.
  void AddExpert(const LayerRouting& routing, RankId home, ExpertId e, double use, double weight) {
    std::span<const SlotId> slots = routing.Replicas(e);
    std::span<const double> p = routing.Probabilities(home, e);
    for (size_t i = 0; i < slots.size(); ++i) {
      if (p[i] <= 0) continue;
      const RankId g = topo_.RankOfSlot(slots[i]);
      const NodeId n = topo_.NodeOfRank(g);
      if (!gpu_listed_[g]) {
        gpu_listed_[g] = 1;
        gpus_.push_back(g);
      }
      gpu_miss_[g] *= 1.0 - use * p[i];
      if (node_sum_[n] == 0.0) expert_nodes_.push_back(n);
      node_sum_[n] += p[i];
      traffic_->rank_load[g] += weight * use * p[i];
    }
    for (NodeId n : expert_nodes_) {
      if (!node_listed_[n]) {
        node_listed_[n] = 1;
        nodes_.push_back(n);
      }
      node_miss_[n] *= 1.0 - use * std::min(1.0, node_sum_[n]);
      node_sum_[n] = 0.0;
    }
    expert_nodes_.clear();
  }

  // Closes the current token (or group of `weight` tokens) homed on `home`.
  void Finish(RankId home, double weight) {
    for (RankId g : gpus_) {
      AddGpuSend(topo_, home, g, weight * (1.0 - gpu_miss_[g]), traffic_);
      gpu_miss_[g] = 1.0;
      gpu_listed_[g] = 0;
    }
    for (NodeId n : nodes_) {
      AddNodeSend(topo_, home, n, weight * (1.0 - node_miss_[n]), traffic_);
      node_miss_[n] = 1.0;
      node_listed_[n] = 0;
    }
    gpus_.clear();
    nodes_.clear();
  }

 private:
  const Topology& topo_;
  LayerTraffic* traffic_;
  std::vector<double> gpu_miss_, node_miss_, node_sum_;
  std::vector<char> gpu_listed_, node_listed_;
  std::vector<RankId> gpus_;
  std::vector<NodeId> nodes_, expert_nodes_;
};

}  // namespace

LayerTraffic TrafficOnTokens(const LayerTokens& tokens, const LayerRouting& routing,
                             const Topology& topology) {
  LayerTraffic traffic = EmptyTraffic(topology);
  TokenAccumulator acc(topology, &traffic);
  const int n = tokens.num_tokens();
  const int ranks = topology.ranks();
  for (int t = 0; t < n; ++t) {
    const RankId home = tokens.HomeRank(t, ranks);
    const ExpertId* ids = tokens.expert_ids.data() + static_cast<size_t>(t) * tokens.top_k;
    for (int k = 0; k < tokens.top_k; ++k) {
      if (ids[k] != kEmptySlot) acc.AddExpert(routing, home, ids[k], 1.0, 1.0);
    }
    acc.Finish(home, 1.0);
  }
  traffic.tokens = n;
  return traffic;
}

LayerTraffic TrafficExpected(std::span<const double> load, int top_k, const LayerRouting& routing,
                             const Topology& topology) {
  LayerTraffic traffic = EmptyTraffic(topology);
  const double total = std::accumulate(load.begin(), load.end(), 0.0);
  const double tokens = total / std::max(1, top_k);
  traffic.tokens = tokens;
  if (tokens <= 0) return traffic;
  TokenAccumulator acc(topology, &traffic);
  const int ranks = topology.ranks();
  const double per_rank = tokens / ranks;
  for (RankId h = 0; h < ranks; ++h) {
    for (ExpertId e = 0; e < static_cast<ExpertId>(load.size()); ++e) {
      if (load[e] <= 0) continue;
      acc.AddExpert(routing, h, e, std::min(1.0, load[e] / tokens), per_rank);
    }
    acc.Finish(h, per_rank);
  }
  return traffic;
}

LayerCost EvaluateLayerOnTokens(const LayerTokens& tokens, const LayerRouting& routing,
                                const Topology& topology, const CostParams& params) {
  return CostFromTraffic(TrafficOnTokens(tokens, routing, topology), topology, params);
}

LayerCost EvaluateLayerExpected(std::span<const double> load, int top_k,
                                const LayerRouting& routing, const Topology& topology,
                                const CostParams& params) {
  return CostFromTraffic(TrafficExpected(load, top_k, routing, topology), topology, params);
}

LayerCost EvaluateLayer(const LayerStats& stats, const LayerRouting& routing,
                        const Topology& topology, const CostParams& params) {
  if (stats.tokens && stats.tokens->num_tokens() > 0) {
    return EvaluateLayerOnTokens(*stats.tokens, routing, topology, params);
  }
  return EvaluateLayerExpected(stats.load, stats.top_k, routing, topology, params);
}

}  // namespace grace
