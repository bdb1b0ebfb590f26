#include "policy/send_counters.h"

#include <algorithm>

namespace grace {

SendCounters::SendCounters(const Topology& topology, int num_experts, std::span<const RankId> home,
                           std::span<const int> token_begin,
                           std::span<const ExpertId> token_experts)
    : topology_(topology),
      experts_(num_experts),
      ranks_(topology.ranks()),
      nodes_(topology.nodes),
      home_(home),
      token_begin_(token_begin),
      token_experts_(token_experts),
      tokens_from_(static_cast<size_t>(num_experts) * ranks_, 0) {
  node_of_.resize(ranks_);
  for (RankId g = 0; g < ranks_; ++g) node_of_[g] = topology.NodeOfRank(g);
  // AddGpuSend's route: inside the home node straight from home, across nodes through the
  // remote node's GPU with home's local index.
  const int per_node = topology.gpus_per_node;
  relay_.resize(static_cast<size_t>(ranks_) * ranks_);
  for (RankId h = 0; h < ranks_; ++h) {
    for (RankId g = 0; g < ranks_; ++g) {
      const NodeId n = node_of_[g];
      relay_[static_cast<size_t>(h) * ranks_ + g] = g == h ? -1
                                                    : n == node_of_[h]
                                                        ? h
                                                        : n * per_node + h % per_node;
    }
  }
  for (int t = 0; t + 1 < static_cast<int>(token_begin.size()); ++t) {
    for (int i = token_begin[t]; i < token_begin[t + 1]; ++i) {
      ++tokens_from_[static_cast<size_t>(token_experts[i]) * ranks_ + home[t]];
    }
  }
}

void SendCounters::Rebuild(std::span<const uint16_t> gpu_count,
                           std::span<const uint16_t> node_count) {
  gpu_zero_.assign(static_cast<size_t>(experts_) * ranks_ * ranks_, 0);
  gpu_one_.assign(gpu_zero_.size(), 0);
  node_zero_.assign(static_cast<size_t>(experts_) * nodes_ * ranks_, 0);
  node_one_.assign(node_zero_.size(), 0);
  const int tokens = static_cast<int>(home_.size());
  for (int t = 0; t < tokens; ++t) {
    const RankId h = home_[t];
    const uint16_t* gpu = gpu_count.data() + static_cast<size_t>(t) * ranks_;
    const uint16_t* node = node_count.data() + static_cast<size_t>(t) * nodes_;
    for (int i = token_begin_[t]; i < token_begin_[t + 1]; ++i) {
      const ExpertId y = token_experts_[i];
      for (RankId g = 0; g < ranks_; ++g) {
        gpu_zero_[Index(y, g, ranks_, h)] += gpu[g] == 0;
        gpu_one_[Index(y, g, ranks_, h)] += gpu[g] == 1;
      }
      for (NodeId n = 0; n < nodes_; ++n) {
        node_zero_[Index(y, n, nodes_, h)] += node[n] == 0;
        node_one_[Index(y, n, nodes_, h)] += node[n] == 1;
      }
    }
  }
}

void SendCounters::Change(std::vector<int32_t>& zero, std::vector<int32_t>& one, int places, int t,
                          int place, int before, int after) {
  const int dz = (after == 0) - (before == 0);
  const int d1 = (after == 1) - (before == 1);
  const RankId h = home_[t];
  for (int i = token_begin_[t]; i < token_begin_[t + 1]; ++i) {
    const size_t at = Index(token_experts_[i], place, places, h);
    zero[at] += dz;
    one[at] += d1;
  }
}

void SendCounters::AddMove(ExpertId y, RankId a, RankId b, LayerTraffic* traffic) const {
  const int32_t* lose = gpu_one_.data() + Index(y, a, ranks_, 0);
  const int32_t* gain = gpu_zero_.data() + Index(y, b, ranks_, 0);
  for (RankId h = 0; h < ranks_; ++h) {
    if (lose[h] != 0) AddGpuSendFast(h, a, -lose[h], traffic);
    if (gain[h] != 0) AddGpuSendFast(h, b, gain[h], traffic);
  }
  const NodeId na = node_of_[a], nb = node_of_[b];
  if (na == nb) return;
  const int32_t* lose_node = node_one_.data() + Index(y, na, nodes_, 0);
  const int32_t* gain_node = node_zero_.data() + Index(y, nb, nodes_, 0);
  for (RankId h = 0; h < ranks_; ++h) {
    if (lose_node[h] != 0) AddNodeSendFast(h, na, -lose_node[h], traffic);
    if (gain_node[h] != 0) AddNodeSendFast(h, nb, gain_node[h], traffic);
  }
}

void SendCounters::ListShared(ExpertId y, std::span<const int> tokens_of_y) {
  if (shared_of_ == y) return;
  shared_of_ = y;
  shared_begin_.assign(experts_ + 1, 0);
  for (int t : tokens_of_y) {
    for (int i = token_begin_[t]; i < token_begin_[t + 1]; ++i)
      ++shared_begin_[token_experts_[i] + 1];
  }
  for (int e = 0; e < experts_; ++e) shared_begin_[e + 1] += shared_begin_[e];
  shared_.resize(shared_begin_.back());
  shared_fill_.assign(shared_begin_.begin(), shared_begin_.end() - 1);
  for (int t : tokens_of_y) {
    for (int i = token_begin_[t]; i < token_begin_[t + 1]; ++i) {
      shared_[shared_fill_[token_experts_[i]]++] = t;
    }
  }
}

void SendCounters::AddSwap(ExpertId y, RankId a, ExpertId u, RankId b,
                           std::span<const int> tokens_of_y, std::span<const uint16_t> gpu_count,
                           std::span<const uint16_t> node_count, LayerTraffic* traffic) {
  AddMove(y, a, b, traffic);
  AddMove(u, b, a, traffic);
  AddSwapCorrection(y, a, u, b, tokens_of_y, gpu_count, node_count, traffic);
}

void SendCounters::AddSwapCorrection(ExpertId y, RankId a, ExpertId u, RankId b,
                                     std::span<const int> tokens_of_y,
                                     std::span<const uint16_t> gpu_count,
                                     std::span<const uint16_t> node_count, LayerTraffic* traffic) {
  ListShared(y, tokens_of_y);
  // On a token holding both, AddMove(y) took h -> a away where y was alone on a and AddMove(u)
  // h -> b where u was alone on b; with both moving the counts stay, so those sends come back.
  const NodeId na = node_of_[a], nb = node_of_[b];
  for (int i = shared_begin_[u]; i < shared_begin_[u + 1]; ++i) {
    const int t = shared_[i];
    const RankId h = home_[t];
    const uint16_t* gpu = gpu_count.data() + static_cast<size_t>(t) * ranks_;
    if (gpu[a] == 1) AddGpuSendFast(h, a, 1, traffic);
    if (gpu[b] == 1) AddGpuSendFast(h, b, 1, traffic);
    if (na == nb) continue;
    const uint16_t* node = node_count.data() + static_cast<size_t>(t) * nodes_;
    if (node[na] == 1) AddNodeSendFast(h, na, 1, traffic);
    if (node[nb] == 1) AddNodeSendFast(h, nb, 1, traffic);
  }
}

void SendCounters::AddReroute(ExpertId y, std::span<const RankId> from, std::span<const RankId> to,
                              LayerTraffic* traffic) const {
  const int32_t* tokens = tokens_from_.data() + static_cast<size_t>(y) * ranks_;
  for (RankId h = 0; h < ranks_; ++h) {
    const RankId a = from[h], b = to[h];
    if (a == b || tokens[h] == 0) continue;
    const int32_t lose = gpu_one_[Index(y, a, ranks_, h)];
    const int32_t gain = gpu_zero_[Index(y, b, ranks_, h)];
    if (lose != 0) AddGpuSendFast(h, a, -lose, traffic);
    if (gain != 0) AddGpuSendFast(h, b, gain, traffic);
    traffic->rank_load[a] -= tokens[h];
    traffic->rank_load[b] += tokens[h];
    const NodeId na = node_of_[a], nb = node_of_[b];
    if (na == nb) continue;
    const int32_t lose_node = node_one_[Index(y, na, nodes_, h)];
    const int32_t gain_node = node_zero_[Index(y, nb, nodes_, h)];
    if (lose_node != 0) AddNodeSendFast(h, na, -lose_node, traffic);
    if (gain_node != 0) AddNodeSendFast(h, nb, gain_node, traffic);
  }
}

namespace {

// One token's correction at one GPU or node `at` with count `c`: the true change of its send
// there when y goes out_y -> in_y and u goes out_u -> in_u (-1: no move), less what the two
// single moves counted.
int Correction(int at, int c, int out_y, int in_y, int out_u, int in_u) {
  const int after = c - (at == out_y) + (at == in_y) - (at == out_u) + (at == in_u);
  const int truth = (after > 0) - (c > 0);
  const int single = -(at == out_y && c == 1) + (at == in_y && c == 0) - (at == out_u && c == 1) +
                     (at == in_u && c == 0);
  return truth - single;
}

}  // namespace

void SendCounters::AddPairCorrection(ExpertId y, std::span<const RankId> y_from,
                                     std::span<const RankId> y_to, ExpertId u,
                                     std::span<const RankId> u_from, std::span<const RankId> u_to,
                                     std::span<const int> tokens_of_y,
                                     std::span<const uint16_t> gpu_count,
                                     std::span<const uint16_t> node_count, LayerTraffic* traffic) {
  ListShared(y, tokens_of_y);
  for (int i = shared_begin_[u]; i < shared_begin_[u + 1]; ++i) {
    const int t = shared_[i];
    const RankId h = home_[t];
    if (y_from[h] == y_to[h] || u_from[h] == u_to[h]) continue;
    const uint16_t* gpu = gpu_count.data() + static_cast<size_t>(t) * ranks_;
    const RankId at[4] = {y_from[h], y_to[h], u_from[h], u_to[h]};
    for (int k = 0; k < 4; ++k) {
      if (std::find(at, at + k, at[k]) != at + k) continue;
      const int c = Correction(at[k], gpu[at[k]], at[0], at[1], at[2], at[3]);
      if (c != 0) AddGpuSendFast(h, at[k], c, traffic);
    }
    const uint16_t* node = node_count.data() + static_cast<size_t>(t) * nodes_;
    NodeId n[4] = {node_of_[at[0]], node_of_[at[1]], node_of_[at[2]], node_of_[at[3]]};
    if (n[0] == n[1]) n[0] = n[1] = -1;  // a move inside a node changes no node count
    if (n[2] == n[3]) n[2] = n[3] = -1;
    for (int k = 0; k < 4; ++k) {
      if (n[k] < 0 || std::find(n, n + k, n[k]) != n + k) continue;
      const int c = Correction(n[k], node[n[k]], n[0], n[1], n[2], n[3]);
      if (c != 0) AddNodeSendFast(h, n[k], c, traffic);
    }
  }
}

}  // namespace grace
