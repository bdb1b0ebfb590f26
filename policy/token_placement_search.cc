#include "policy/token_placement_search.h"

#include <algorithm>

namespace grace {

namespace {

// Counter tables above this many entries are not worth their memory: apply candidates instead.
constexpr size_t kMaxCounterEntries = size_t{1} << 24;

// *to = a + b, field by field.
void SumTraffic(const LayerTraffic& a, const LayerTraffic& b, LayerTraffic* to) {
  auto sum = [](const std::vector<double>& x, const std::vector<double>& y,
                std::vector<double>* out) {
    out->resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) (*out)[i] = x[i] + y[i];
  };
  to->tokens = a.tokens;
  to->remote_sends = a.remote_sends + b.remote_sends;
  to->cross_node_sends = a.cross_node_sends + b.cross_node_sends;
  sum(a.rank_load, b.rank_load, &to->rank_load);
  sum(a.intra_send, b.intra_send, &to->intra_send);
  sum(a.intra_recv, b.intra_recv, &to->intra_recv);
  sum(a.inter_out, b.inter_out, &to->inter_out);
  sum(a.inter_in, b.inter_in, &to->inter_in);
}

}  // namespace

TokenPlacementSearch::TokenPlacementSearch(const LayerTokens& tokens, int num_experts,
                                           const Topology& topology, const CostParams& params,
                                           const PlacementObjective& objective)
    : topology_(topology), params_(params), objective_(objective), num_experts_(num_experts) {
  const int n = tokens.num_tokens();
  home_.resize(n);
  token_begin_.assign(num_experts + 1, 0);
  expert_begin_.assign(n + 1, 0);
  for (int t = 0; t < n; ++t) {
    home_[t] = tokens.HomeRank(t, topology.ranks());
    const ExpertId* ids = tokens.expert_ids.data() + static_cast<size_t>(t) * tokens.top_k;
    for (int k = 0; k < tokens.top_k; ++k) {
      const ExpertId e = ids[k];
      if (e < 0 || e >= num_experts) continue;
      ++token_begin_[e + 1];
      if (std::find(ids, ids + k, e) != ids + k) {
        fast_ = false;  // counters assume each expert once per token
        continue;
      }
      experts_of_.push_back(e);
    }
    expert_begin_[t + 1] = static_cast<int>(experts_of_.size());
  }
  for (int e = 0; e < num_experts; ++e) token_begin_[e + 1] += token_begin_[e];
  tokens_.resize(token_begin_.back());
  std::vector<int> fill(token_begin_.begin(), token_begin_.end() - 1);
  for (int t = 0; t < n; ++t) {
    for (int k = 0; k < tokens.top_k; ++k) {
      const ExpertId e = tokens.expert_ids[static_cast<size_t>(t) * tokens.top_k + k];
      if (e >= 0 && e < num_experts) tokens_[fill[e]++] = t;
    }
  }
  const size_t entries = static_cast<size_t>(num_experts) * topology.ranks() * topology.ranks();
  if (entries > kMaxCounterEntries) fast_ = false;
  if (fast_) counters_.emplace(topology, num_experts, home_, expert_begin_, experts_of_);
}

void TokenPlacementSearch::Reset(std::span<const RankId> rank_of_expert) {
  const int ranks = topology_.ranks();
  const int nodes = topology_.nodes;
  const int n = static_cast<int>(home_.size());
  traffic_ = EmptyTraffic(topology_);
  traffic_.tokens = n;
  gpu_count_.assign(static_cast<size_t>(n) * ranks, 0);
  node_count_.assign(static_cast<size_t>(n) * nodes, 0);
  rank_of_.assign(rank_of_expert.begin(), rank_of_expert.end());
  size_.assign(ranks, 0);
  for (ExpertId e = 0; e < num_experts_; ++e) {
    const RankId g = rank_of_[e];
    const NodeId node = topology_.NodeOfRank(g);
    ++size_[g];
    for (int i = token_begin_[e]; i < token_begin_[e + 1]; ++i) {
      const int t = tokens_[i];
      if (gpu_count_[static_cast<size_t>(t) * ranks + g]++ == 0) ToggleGpu(t, g, 1);
      if (node_count_[static_cast<size_t>(t) * nodes + node]++ == 0) ToggleNode(t, node, 1);
    }
    traffic_.rank_load[g] += token_begin_[e + 1] - token_begin_[e];
  }
  if (counters_) counters_->Rebuild(gpu_count_, node_count_);
  delta_of_ = -1;
}

void TokenPlacementSearch::ToggleGpu(int token, RankId g, double sign) {
  AddGpuSend(topology_, home_[token], g, sign, &traffic_);
}

void TokenPlacementSearch::ToggleNode(int token, NodeId n, double sign) {
  AddNodeSend(topology_, home_[token], n, sign, &traffic_);
}

void TokenPlacementSearch::Move(ExpertId e, RankId to) {
  const RankId from = rank_of_[e];
  if (from == to) return;
  const int ranks = topology_.ranks();
  const int nodes = topology_.nodes;
  const NodeId from_node = topology_.NodeOfRank(from);
  const NodeId to_node = topology_.NodeOfRank(to);
  SendCounters* counters = counters_ ? &*counters_ : nullptr;
  for (int i = token_begin_[e]; i < token_begin_[e + 1]; ++i) {
    const int t = tokens_[i];
    uint16_t* gpu = gpu_count_.data() + static_cast<size_t>(t) * ranks;
    uint16_t* node = node_count_.data() + static_cast<size_t>(t) * nodes;
    if (--gpu[from] == 0) ToggleGpu(t, from, -1);
    if (gpu[to]++ == 0) ToggleGpu(t, to, 1);
    if (counters != nullptr) {
      counters->GpuChanged(t, from, gpu[from] + 1, gpu[from]);
      counters->GpuChanged(t, to, gpu[to] - 1, gpu[to]);
    }
    if (from_node != to_node) {
      if (--node[from_node] == 0) ToggleNode(t, from_node, -1);
      if (node[to_node]++ == 0) ToggleNode(t, to_node, 1);
      if (counters != nullptr) {
        counters->NodeChanged(t, from_node, node[from_node] + 1, node[from_node]);
        counters->NodeChanged(t, to_node, node[to_node] - 1, node[to_node]);
      }
    }
  }
  const double load = token_begin_[e + 1] - token_begin_[e];
  traffic_.rank_load[from] -= load;
  traffic_.rank_load[to] += load;
  --size_[from];
  ++size_[to];
  rank_of_[e] = to;
  delta_of_ = -1;
}

double TokenPlacementSearch::ScoreMove(ExpertId v, RankId b) {
  const RankId a = rank_of_[v];
  if (!fast_) {
    Move(v, b);
    const double score = Objective();
    Move(v, a);
    return score;
  }
  SumTraffic(traffic_, MoveDelta(v, b), &scratch_);
  return objective_.Score(scratch_, topology_, params_);
}

const LayerTraffic& TokenPlacementSearch::MoveDelta(ExpertId v, RankId b) {
  const int ranks = topology_.ranks();
  if (delta_of_ != v) {
    // Every target's change at once: a swap of v with any expert on b starts from it.
    delta_of_ = v;
    move_delta_.resize(ranks);
    const RankId a = rank_of_[v];
    const double load = static_cast<double>(TokensOf(v).size());
    for (RankId g = 0; g < ranks; ++g) {
      move_delta_[g] = EmptyTraffic(topology_);
      if (g == a) continue;
      counters_->AddMove(v, a, g, &move_delta_[g]);
      move_delta_[g].rank_load[a] -= load;
      move_delta_[g].rank_load[g] += load;
    }
  }
  return move_delta_[b];
}

double TokenPlacementSearch::ScoreSwap(ExpertId v, ExpertId u) {
  const RankId a = rank_of_[v], b = rank_of_[u];
  if (!fast_) {
    Move(v, b);
    Move(u, a);
    const double score = Objective();
    Move(u, b);
    Move(v, a);
    return score;
  }
  SumTraffic(traffic_, MoveDelta(v, b), &scratch_);
  counters_->AddMove(u, b, a, &scratch_);
  counters_->AddSwapCorrection(v, a, u, b, TokensOf(v), gpu_count_, node_count_, &scratch_);
  const double load = static_cast<double>(TokensOf(u).size());
  scratch_.rank_load[b] -= load;
  scratch_.rank_load[a] += load;
  return objective_.Score(scratch_, topology_, params_);
}

double TokenPlacementSearch::Search(std::span<const int> min_size, std::span<const int> max_size,
                                    int max_passes) {
  const int ranks = topology_.ranks();
  double current = Objective();
  for (int pass = 0; pass < max_passes; ++pass) {
    bool improved = false;
    for (ExpertId v = 0; v < num_experts_; ++v) {
      const RankId a = rank_of_[v];
      double best = current - 1e-12 * std::max(1.0, current);
      RankId best_rank = -1;
      ExpertId best_partner = -1;
      for (RankId b = 0; b < ranks; ++b) {
        if (b == a || size_[b] >= max_size[b] || size_[a] <= min_size[a]) continue;
        const double score = ScoreMove(v, b);
        if (score < best) best = score, best_rank = b, best_partner = -1;
      }
      for (ExpertId u = 0; u < num_experts_; ++u) {
        const RankId b = rank_of_[u];
        if (b == a) continue;
        const double score = ScoreSwap(v, u);
        if (score < best) best = score, best_rank = b, best_partner = u;
      }
      if (best_rank < 0) continue;
      Move(v, best_rank);
      if (best_partner >= 0) Move(best_partner, a);
      current = Objective();
      improved = true;
    }
    if (!improved) break;
  }
  return current;
}

}  // namespace grace
