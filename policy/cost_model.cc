#include "policy/cost_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace grace {

LayerRouting::LayerRouting(std::span<const ExpertId> row, int num_experts, const Topology& topology)
    : topology_(topology), begin_(num_experts + 1, 0) {
  for (ExpertId e : row) {
    if (e != kEmptySlot) ++begin_[e + 1];
  }
  std::partial_sum(begin_.begin(), begin_.end(), begin_.begin());
  slots_.resize(begin_.back());
  std::vector<int> fill(begin_.begin(), begin_.end() - 1);
  for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
    if (row[s] != kEmptySlot) slots_[fill[row[s]]++] = s;
  }
  // Views in the order ViewOf numbers them: holder GPUs, then nodes, then elsewhere. Slots
  // ascend, so one GPU's (and one node's) replicas are contiguous.
  const int per_node = topology.gpus_per_node;
  view_begin_.assign(num_experts + 1, 0);
  prob_begin_.assign(num_experts + 1, 0);
  std::vector<View> node_views;
  for (ExpertId e = 0; e < num_experts; ++e) {
    std::span<const SlotId> slots = Replicas(e);
    const int n = static_cast<int>(slots.size());
    node_views.clear();
    for (int i = 0; i < n; ++i) {
      const RankId g = topology.RankOfSlot(slots[i]);
      const bool new_gpu = i == 0 || topology.RankOfSlot(slots[i - 1]) != g;
      const bool new_node = i == 0 || topology.NodeOfSlot(slots[i - 1]) != topology.NodeOfRank(g);
      if (new_gpu) views_.push_back({1, i, i});
      views_.back().last = i + 1;
      if (new_node) node_views.push_back({per_node, i, i});
      node_views.back().last = i + 1;
      if (new_gpu) --node_views.back().ranks;  // a holder sees its own copy instead
    }
    views_.insert(views_.end(), node_views.begin(), node_views.end());
    views_.push_back({(topology.nodes - static_cast<int>(node_views.size())) * per_node, 0, n});
    view_begin_[e + 1] = static_cast<int>(views_.size());
    prob_begin_[e + 1] = prob_begin_[e] + static_cast<size_t>(NumViews(e)) * slots.size();
  }
  prob_.assign(prob_begin_.back(), 0.0);
}

int LayerRouting::ViewOf(RankId rank, ExpertId e) const {
  // A GPU holding a copy sees it as its own view (numbered by holder GPU); others by their node.
  int gpus = 0;
  RankId last_gpu = -1;
  for (SlotId s : Replicas(e)) {
    const RankId g = topology_.RankOfSlot(s);
    if (g == last_gpu) continue;
    if (g == rank) return gpus;
    ++gpus;
    last_gpu = g;
  }
  return NodeView(topology_.NodeOfRank(rank), e);
}

int LayerRouting::NodeView(NodeId node, ExpertId e) const {
  std::span<const SlotId> slots = Replicas(e);
  int gpus = 0, nodes = 0, node_view = -1;
  RankId last_gpu = -1;
  NodeId last_node = -1;
  for (SlotId s : slots) {
    const RankId g = topology_.RankOfSlot(s);
    if (g == last_gpu) continue;
    ++gpus;
    last_gpu = g;
    const NodeId n = topology_.NodeOfRank(g);
    if (n == last_node) continue;
    if (n == node) node_view = nodes;
    ++nodes;
    last_node = n;
  }
  return gpus + (node_view >= 0 ? node_view : nodes);
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
    AddExpert(routing.Replicas(e), routing.Probabilities(home, e), use, weight);
  }
  // An expert with one replica, on GPU g of node n, used for sure (use and probability 1): what
  // the general form below computes then, without its lists.
  void AddCertain(RankId g, NodeId n, double weight) {
    if (!gpu_listed_[g]) {
      gpu_listed_[g] = 1;
      gpus_.push_back(g);
    }
    gpu_miss_[g] = 0.0;
    traffic_->rank_load[g] += weight;
    if (!node_listed_[n]) {
      node_listed_[n] = 1;
      nodes_.push_back(n);
    }
    node_miss_[n] = 0.0;
  }
  // The same with the expert's replicas and their probabilities for this token's home given.
  void AddExpert(std::span<const SlotId> slots, std::span<const double> p, double use,
                 double weight) {
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
  // An expert with one replica that every view reaches with the same probability (every
  // routing grace builds: 1) needs no view lookup per token.
  const int experts = routing.num_experts();
  std::vector<double> single(experts, 0.0);
  std::vector<char> is_single(experts, 0);
  std::vector<RankId> certain(experts, -1);  // its GPU when used with probability 1
  for (ExpertId e = 0; e < experts; ++e) {
    if (routing.Replicas(e).size() != 1) continue;
    const double p = routing.ViewProbabilities(e, 0)[0];
    bool same = true;
    for (int v = 1; v < routing.NumViews(e); ++v) same &= routing.ViewProbabilities(e, v)[0] == p;
    single[e] = p;
    is_single[e] = same;
    if (same && p == 1.0) certain[e] = topology.RankOfSlot(routing.Replicas(e)[0]);
  }
  for (int t = 0; t < n; ++t) {
    const RankId home = tokens.HomeRank(t, ranks);
    const ExpertId* ids = tokens.expert_ids.data() + static_cast<size_t>(t) * tokens.top_k;
    for (int k = 0; k < tokens.top_k; ++k) {
      const ExpertId e = ids[k];
      if (e == kEmptySlot) continue;
      if (e >= 0 && e < experts && certain[e] >= 0) {
        acc.AddCertain(certain[e], topology.NodeOfRank(certain[e]), 1.0);
      } else if (e >= 0 && e < experts && is_single[e]) {
        acc.AddExpert(routing.Replicas(e), {&single[e], 1}, 1.0, 1.0);
      } else {
        acc.AddExpert(routing, home, e, 1.0, 1.0);
      }
    }
    acc.Finish(home, 1.0);
  }
  traffic.tokens = n;
  return traffic;
}

namespace {

// The expected traffic of TrafficExpected, computed per view rather than per home rank. A home's
// chance of sending to GPU g is 1 - (product over g's replicas of 1 - use x probability), and to
// node n likewise over n's experts; every home of a node sees an expert through the same view,
// except the experts on its own GPU. So each node's homes share one default per GPU and node,
// summed in O(ranks) per node, and each home corrects only the GPUs and nodes that hold replicas
// of its own experts: O(nodes x ranks) in all, not O(ranks x experts x replicas).
class ExpectedTraffic {
 public:
  ExpectedTraffic(std::span<const double> load, double tokens, const LayerRouting& routing,
                  const Topology& topology, LayerTraffic* traffic)
      : routing_(routing),
        t_(topology),
        traffic_(traffic),
        per_rank_(tokens / topology.ranks()),
        use_(load.size(), 0.0),
        view_(load.size(), 0),
        slot_expert_(topology.total_slots(), kEmptySlot),
        slot_replica_(topology.total_slots(), 0),
        node_experts_begin_(topology.nodes + 1, 0),
        node_entry_(static_cast<size_t>(topology.nodes) * load.size(), -1),
        gpu_mark_(topology.ranks(), 0),
        node_mark_(topology.nodes, 0) {
    for (ExpertId e = 0; e < static_cast<ExpertId>(load.size()); ++e) {
      if (load[e] > 0) use_[e] = std::min(1.0, load[e] / tokens);
      view_[e] = Elsewhere(e);
      std::span<const SlotId> slots = routing.Replicas(e);
      for (size_t i = 0; i < slots.size(); ++i) {
        slot_expert_[slots[i]] = e;
        slot_replica_[slots[i]] = static_cast<int>(i);
      }
    }
    // Each node's experts, in slot order, with their replicas there (contiguous: slots ascend).
    const int node_slots = t_.gpus_per_node * t_.slots_per_gpu;
    std::vector<int> entry(load.size(), -1);  // [expert] -> its latest index into node_experts_
    for (NodeId n = 0; n < t_.nodes; ++n) {
      const int begin = static_cast<int>(node_experts_.size());
      for (SlotId s = n * node_slots; s < (n + 1) * node_slots; ++s) {
        const ExpertId e = slot_expert_[s];
        if (e == kEmptySlot) continue;
        const int i = slot_replica_[s];
        if (entry[e] >= begin) {
          NodeExpert& same = node_experts_[entry[e]];
          same.first = std::min(same.first, i);
          same.last = std::max(same.last, i + 1);
        } else {
          entry[e] = static_cast<int>(node_experts_.size());
          node_entry_[static_cast<size_t>(n) * load.size() + e] = entry[e];
          node_experts_.push_back({e, i, i + 1});
        }
      }
      node_experts_begin_[n + 1] = static_cast<int>(node_experts_.size());
    }
    // Seen from a node holding none of the GPU's (or node's) experts.
    gpu_elsewhere_.resize(t_.ranks());
    node_elsewhere_.resize(t_.nodes);
    for (RankId g = 0; g < t_.ranks(); ++g) gpu_elsewhere_[g] = GpuMiss(g);
    for (NodeId n = 0; n < t_.nodes; ++n) node_elsewhere_[n] = NodeMiss(n);
    gpu_default_ = gpu_elsewhere_;
    node_default_ = node_elsewhere_;
  }

  void Run() {
    AddRankLoads();
    for (NodeId n = 0; n < t_.nodes; ++n) AddNode(n);
  }

 private:
  struct NodeExpert {
    ExpertId expert;
    int first, last;  // its replicas on the node, indices into Replicas(expert)
  };

  int Elsewhere(ExpertId e) const { return routing_.NumViews(e) - 1; }
  std::span<const NodeExpert> NodeExperts(NodeId n) const {
    return {node_experts_.data() + node_experts_begin_[n],
            static_cast<size_t>(node_experts_begin_[n + 1] - node_experts_begin_[n])};
  }

  // Probability that a token does not send to GPU g / node n, each expert seen through view_.
  double GpuMiss(RankId g) const {
    double miss = 1.0;
    for (SlotId s = g * t_.slots_per_gpu; s < (g + 1) * t_.slots_per_gpu; ++s) {
      const ExpertId e = slot_expert_[s];
      if (e == kEmptySlot || use_[e] <= 0) continue;
      miss *= 1.0 - use_[e] * routing_.ViewProbabilities(e, view_[e])[slot_replica_[s]];
    }
    return miss;
  }
  double NodeMiss(NodeId n) const {
    double miss = 1.0;
    for (const NodeExpert& x : NodeExperts(n)) {
      if (use_[x.expert] > 0) miss *= NodeFactor(x, view_[x.expert]);
    }
    return miss;
  }
  // One expert's part of NodeMiss: the chance a token does not reach its copies on the node.
  double NodeFactor(const NodeExpert& x, int view) const {
    std::span<const double> p = routing_.ViewProbabilities(x.expert, view);
    double sum = 0;
    for (int i = x.first; i < x.last; ++i) sum += p[i];
    return 1.0 - use_[x.expert] * std::min(1.0, sum);
  }
  // NodeMiss(n) for a home of `home_node` that sees `own` (its GPU's experts) through view_ and
  // the rest as its node does: node_default_[n] with the factors of `own` swapped, O(own)
  // instead of O(n's experts). A factor of 0 cannot be divided out: then from scratch.
  double NodeMissForHome(NodeId n, NodeId home_node, std::span<const ExpertId> own) const {
    double miss = node_default_[n];
    for (ExpertId e : own) {
      const int entry = node_entry_[static_cast<size_t>(n) * use_.size() + e];
      if (entry < 0 || use_[e] <= 0) continue;
      const NodeExpert& x = node_experts_[entry];
      const double before = NodeFactor(x, routing_.NodeView(home_node, e));
      if (before < kSmallestFactor) return NodeMiss(n);
      miss *= NodeFactor(x, view_[e]) / before;
    }
    return miss;
  }
  static constexpr double kSmallestFactor = 1e-6;

  // (token, expert) pairs per GPU: linear, so per view, times the ranks that share it.
  void AddRankLoads() {
    for (ExpertId e = 0; e < static_cast<ExpertId>(use_.size()); ++e) {
      if (use_[e] <= 0) continue;
      std::span<const SlotId> slots = routing_.Replicas(e);
      for (int v = 0; v < routing_.NumViews(e); ++v) {
        const int ranks = routing_.ViewRanks(e, v);
        if (ranks == 0) continue;
        std::span<const double> p = routing_.ViewProbabilities(e, v);
        for (size_t i = 0; i < slots.size(); ++i) {
          traffic_->rank_load[t_.RankOfSlot(slots[i])] += per_rank_ * use_[e] * p[i] * ranks;
        }
      }
    }
  }

  // The homes of node `home_node`.
  void AddNode(NodeId home_node) {
    const int per_node = t_.gpus_per_node;
    // The node's defaults differ from elsewhere only where its own experts have replicas.
    for (const NodeExpert& x : NodeExperts(home_node))
      view_[x.expert] = routing_.NodeView(home_node, x.expert);
    std::vector<RankId> gpus;
    std::vector<NodeId> nodes;
    for (const NodeExpert& x : NodeExperts(home_node)) Touched(x.expert, &gpus, &nodes);
    Unmark(gpus, nodes);
    for (RankId g : gpus) gpu_default_[g] = GpuMiss(g);
    for (NodeId n : nodes) node_default_[n] = NodeMiss(n);

    // Every home of the node sending to the other nodes' GPUs with the defaults: home j reaches
    // node n's GPUs through n's j-th GPU (AddGpuSend), so each GPU receives from all homes but
    // one, and n's j-th GPU forwards all of n's sends but its own.
    for (NodeId n = 0; n < t_.nodes; ++n) {
      if (n == home_node) continue;
      const RankId first = n * per_node;
      double node_sends = 0;
      for (RankId g = first; g < first + per_node; ++g) node_sends += Send(gpu_default_[g]);
      traffic_->remote_sends += per_node * node_sends;
      for (RankId g = first; g < first + per_node; ++g) {
        const double tokens = Send(gpu_default_[g]);
        traffic_->intra_recv[g] += (per_node - 1) * tokens;
        traffic_->intra_send[g] += node_sends - tokens;
      }
      const double tokens = Send(node_default_[n]);
      traffic_->cross_node_sends += per_node * tokens;
      traffic_->inter_out[home_node] += per_node * tokens;
      traffic_->inter_in[n] += per_node * tokens;
    }
    // Each home: exact sends inside its node, and corrections where its own GPU's experts have
    // replicas elsewhere (it sees those experts through its own copy).
    std::vector<RankId> own_gpus;
    std::vector<NodeId> own_nodes;
    std::vector<ExpertId> own;
    for (RankId h = home_node * per_node; h < (home_node + 1) * per_node; ++h) {
      own.clear();
      own_gpus.clear();
      own_nodes.clear();
      for (SlotId s = h * t_.slots_per_gpu; s < (h + 1) * t_.slots_per_gpu; ++s) {
        const ExpertId e = slot_expert_[s];
        if (e == kEmptySlot || std::find(own.begin(), own.end(), e) != own.end()) continue;
        own.push_back(e);
        Touched(e, &own_gpus, &own_nodes);
      }
      for (ExpertId e : own) view_[e] = routing_.ViewOf(h, e);
      // A GPU of the node holding none of h's experts sees every expert as the node does.
      for (RankId g = home_node * per_node; g < (home_node + 1) * per_node; ++g) {
        AddGpuSend(t_, h, g, Send(gpu_mark_[g] ? GpuMiss(g) : gpu_default_[g]), traffic_);
      }
      Unmark(own_gpus, own_nodes);
      for (RankId g : own_gpus) {
        if (t_.NodeOfRank(g) == home_node) continue;
        AddGpuSend(t_, h, g, per_rank_ * (gpu_default_[g] - GpuMiss(g)), traffic_);
      }
      for (NodeId n : own_nodes) {
        if (n == home_node) continue;
        AddNodeSend(t_, h, n, per_rank_ * (node_default_[n] - NodeMissForHome(n, home_node, own)),
                    traffic_);
      }
      for (ExpertId e : own) view_[e] = routing_.NodeView(home_node, e);
    }
    for (RankId g : gpus) gpu_default_[g] = gpu_elsewhere_[g];
    for (NodeId n : nodes) node_default_[n] = node_elsewhere_[n];
    for (const NodeExpert& x : NodeExperts(home_node)) view_[x.expert] = Elsewhere(x.expert);
  }

  double Send(double miss) const { return per_rank_ * (1.0 - miss); }

  // Adds the GPUs and nodes holding replicas of e that the lists lack, marking them (Unmark
  // clears the marks).
  void Touched(ExpertId e, std::vector<RankId>* gpus, std::vector<NodeId>* nodes) {
    for (SlotId s : routing_.Replicas(e)) {
      const RankId g = t_.RankOfSlot(s);
      const NodeId n = t_.NodeOfRank(g);
      if (!gpu_mark_[g]) {
        gpu_mark_[g] = 1;
        gpus->push_back(g);
      }
      if (!node_mark_[n]) {
        node_mark_[n] = 1;
        nodes->push_back(n);
      }
    }
  }
  void Unmark(std::span<const RankId> gpus, std::span<const NodeId> nodes) {
    for (RankId g : gpus) gpu_mark_[g] = 0;
    for (NodeId n : nodes) node_mark_[n] = 0;
  }

  const LayerRouting& routing_;
  const Topology& t_;
  LayerTraffic* traffic_;
  double per_rank_;
  std::vector<double> use_;  // per expert: the chance a token uses it
  std::vector<int> view_;    // per expert: the view of the homes being summed
  std::vector<ExpertId> slot_expert_;
  std::vector<int> slot_replica_;  // index into Replicas(slot_expert_[s])
  std::vector<int> node_experts_begin_;
  std::vector<NodeExpert> node_experts_;
  std::vector<int> node_entry_;  // [node][expert] -> index into node_experts_, -1: none there
  std::vector<double> gpu_elsewhere_, node_elsewhere_;  // miss seen from nodes without copies
  std::vector<double> gpu_default_, node_default_;      // miss seen from the current node
  std::vector<char> gpu_mark_, node_mark_;
};

}  // namespace

LayerTraffic TrafficExpected(std::span<const double> load, int top_k, const LayerRouting& routing,
                             const Topology& topology) {
  LayerTraffic traffic = EmptyTraffic(topology);
  const double total = std::accumulate(load.begin(), load.end(), 0.0);
  const double tokens = total / std::max(1, top_k);
  traffic.tokens = tokens;
  if (tokens <= 0) return traffic;
  ExpectedTraffic(load, tokens, routing, topology, &traffic).Run();
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

namespace {

void ScaleTraffic(double scale, LayerTraffic* t) {
  t->tokens *= scale;
  t->remote_sends *= scale;
  t->cross_node_sends *= scale;
  for (std::vector<double>* v :
       {&t->rank_load, &t->intra_send, &t->intra_recv, &t->inter_out, &t->inter_in}) {
    for (double& x : *v) x *= scale;
  }
}

}  // namespace

LayerCost EvaluateLayer(const LayerStats& stats, const LayerRouting& routing,
                        const Topology& topology, const CostParams& params) {
  if (stats.tokens && stats.tokens->num_tokens() > 0) {
    LayerTraffic traffic = TrafficOnTokens(*stats.tokens, routing, topology);
    const double pairs = static_cast<double>(stats.tokens->expert_ids.size());
    const double load = stats.total_load();
    const double scale = load > 0 && pairs > 0 ? load / pairs : 1.0;
    if (std::abs(scale - 1.0) > 1e-6) ScaleTraffic(scale, &traffic);
    return CostFromTraffic(traffic, topology, params);
  }
  return EvaluateLayerExpected(stats.load, stats.top_k, routing, topology, params);
}

}  // namespace grace
