#include "policy/slot_placement_search.h"

#include <algorithm>

namespace grace {

namespace {

// Counter tables above this many entries are not worth their memory: apply candidates instead.
constexpr size_t kMaxCounterEntries = size_t{1} << 24;

}  // namespace

SlotPlacementSearch::SlotPlacementSearch(const LayerTokens& tokens, int num_experts,
                                         const Topology& topology, const CostParams& params,
                                         const PlacementObjective& objective)
    : topology_(topology),
      params_(params),
      objective_(objective),
      experts_(num_experts),
      top_k_(tokens.top_k) {
  const int n = tokens.num_tokens();
  home_.resize(n);
  for (int t = 0; t < n; ++t) home_[t] = tokens.HomeRank(t, topology.ranks());
  node_of_.resize(topology.ranks());
  for (RankId g = 0; g < topology.ranks(); ++g) node_of_[g] = topology.NodeOfRank(g);
  pair_begin_.assign(num_experts + 1, 0);
  for (ExpertId e : tokens.expert_ids) {
    if (e >= 0 && e < num_experts) ++pair_begin_[e + 1];
  }
  for (int e = 0; e < num_experts; ++e) pair_begin_[e + 1] += pair_begin_[e];
  pairs_.resize(pair_begin_.back());
  std::vector<int> fill(pair_begin_.begin(), pair_begin_.end() - 1);
  for (int p = 0; p < static_cast<int>(tokens.expert_ids.size()); ++p) {
    const ExpertId e = tokens.expert_ids[p];
    if (e >= 0 && e < num_experts) pairs_[fill[e]++] = p;
  }
  pair_expert_.assign(tokens.expert_ids.size(), kEmptySlot);
  for (int e = 0; e < num_experts; ++e) {
    for (int i = pair_begin_[e]; i < pair_begin_[e + 1]; ++i) pair_expert_[pairs_[i]] = e;
  }
  // Distinct tokens per expert and experts per token, for SendCounters.
  token_begin_.assign(num_experts + 1, 0);
  expert_begin_.assign(n + 1, 0);
  for (int t = 0; t < n; ++t) {
    const ExpertId* ids = tokens.expert_ids.data() + static_cast<size_t>(t) * top_k_;
    for (int k = 0; k < top_k_; ++k) {
      const ExpertId e = ids[k];
      if (e < 0 || e >= num_experts) continue;
      if (std::find(ids, ids + k, e) != ids + k) {
        fast_ = false;  // counters assume each expert once per token
        continue;
      }
      experts_of_.push_back(e);
      ++token_begin_[e + 1];
    }
    expert_begin_[t + 1] = static_cast<int>(experts_of_.size());
  }
  for (int e = 0; e < num_experts; ++e) token_begin_[e + 1] += token_begin_[e];
  tokens_.resize(token_begin_.back());
  std::vector<int> token_fill(token_begin_.begin(), token_begin_.end() - 1);
  for (int t = 0; t < n; ++t) {
    for (int i = expert_begin_[t]; i < expert_begin_[t + 1]; ++i) {
      tokens_[token_fill[experts_of_[i]]++] = t;
    }
  }
  const size_t entries = static_cast<size_t>(num_experts) * topology.ranks() * topology.ranks();
  if (entries > kMaxCounterEntries) fast_ = false;
  if (fast_) counters_.emplace(topology, num_experts, home_, expert_begin_, experts_of_);
}

void SlotPlacementSearch::Reset(std::span<const ExpertId> row) {
  const int ranks = topology_.ranks();
  const int n = static_cast<int>(home_.size());
  traffic_ = EmptyTraffic(topology_);
  traffic_.tokens = n;
  gpu_count_.assign(static_cast<size_t>(n) * ranks, 0);
  node_count_.assign(static_cast<size_t>(n) * topology_.nodes, 0);
  used_.assign(pair_expert_.size(), -1);
  row_.assign(row.size(), kEmptySlot);
  copies_.assign(experts_, {});
  holds_.assign(static_cast<size_t>(ranks) * experts_, 0);
  track_ = false;
  for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) SetSlot(s, row[s]);
  track_ = true;
  if (counters_) counters_->Rebuild(gpu_count_, node_count_);
}

std::vector<ExpertId> SlotPlacementSearch::Row() const {
  return row_;
}

RankId SlotPlacementSearch::Choose(int pair) const {
  return ChooseAmong(copies_[pair_expert_[pair]], pair);
}

RankId SlotPlacementSearch::ChooseAmong(std::span<const RankId> copies, int pair) const {
  if (copies.size() <= 1) return copies.empty() ? -1 : copies[0];
  const int token = pair / top_k_;
  const RankId home = home_[token];
  const NodeId home_node = node_of_[home];
  int local = 0;
  for (RankId g : copies) {
    if (g == home) return g;
    local += node_of_[g] == home_node;
  }
  if (local == 0) return copies[token % copies.size()];
  int pick = token % local;
  for (RankId g : copies) {
    if (node_of_[g] == home_node && pick-- == 0) return g;
  }
  return -1;  // not reached
}

void SlotPlacementSearch::ToggleGpu(int token, RankId g, double sign) {
  AddGpuSend(topology_, home_[token], g, sign, &traffic_);
}

void SlotPlacementSearch::ToggleNode(int token, NodeId n, double sign) {
  AddNodeSend(topology_, home_[token], n, sign, &traffic_);
}

void SlotPlacementSearch::Use(int pair, RankId g, int sign) {
  const int token = pair / top_k_;
  const NodeId n = topology_.NodeOfRank(g);
  uint16_t& gpu = gpu_count_[static_cast<size_t>(token) * topology_.ranks() + g];
  uint16_t& node = node_count_[static_cast<size_t>(token) * topology_.nodes + n];
  traffic_.rank_load[g] += sign;
  if (sign > 0) {
    if (gpu++ == 0) ToggleGpu(token, g, 1);
    if (node++ == 0) ToggleNode(token, n, 1);
  } else {
    if (--gpu == 0) ToggleGpu(token, g, -1);
    if (--node == 0) ToggleNode(token, n, -1);
  }
  if (track_ && counters_) {
    counters_->GpuChanged(token, g, gpu - sign, gpu);
    counters_->NodeChanged(token, n, node - sign, node);
  }
}

void SlotPlacementSearch::Reroute(ExpertId e) {
  const bool single = copies_[e].size() == 1;
  const RankId only = single ? copies_[e][0] : -1;
  for (int i = pair_begin_[e]; i < pair_begin_[e + 1]; ++i) {
    const int p = pairs_[i];
    const RankId to = single ? only : Choose(p);
    if (to == used_[p]) continue;
    if (used_[p] >= 0) Use(p, used_[p], -1);
    if (to >= 0) Use(p, to, 1);
    used_[p] = to;
  }
}

void SlotPlacementSearch::SetCopy(SlotId s, ExpertId e) {
  const ExpertId old = row_[s];
  const RankId g = topology_.RankOfSlot(s);
  row_[s] = e;
  if (old != kEmptySlot) {
    std::vector<RankId>& c = copies_[old];
    c.erase(std::find(c.begin(), c.end(), g));
    holds_[static_cast<size_t>(g) * experts_ + old] = 0;
  }
  if (e != kEmptySlot) {
    std::vector<RankId>& c = copies_[e];
    c.insert(std::lower_bound(c.begin(), c.end(), g), g);
    holds_[static_cast<size_t>(g) * experts_ + e] = 1;
  }
}

void SlotPlacementSearch::SetSlot(SlotId s, ExpertId e) {
  const ExpertId old = row_[s];
  if (old == e) return;
  SetCopy(s, e);
  if (old != kEmptySlot) Reroute(old);
  if (e != kEmptySlot) Reroute(e);
}

void SlotPlacementSearch::SwapSlots(SlotId a, SlotId b) {
  const ExpertId ea = row_[a], eb = row_[b];
  SetCopy(a, kEmptySlot);
  SetCopy(b, ea);
  SetCopy(a, eb);
  if (ea != kEmptySlot) Reroute(ea);
  if (eb != kEmptySlot) Reroute(eb);
}

double SlotPlacementSearch::Search(int max_passes) {
  const int slots = static_cast<int>(row_.size());
  const int per_gpu = topology_.slots_per_gpu;
  double current = Objective();
  // Slots worth another look: those on GPUs that changed since the slot was last tried
  // (a move elsewhere can still change its best move, but rarely does).
  std::vector<char> dirty(topology_.ranks(), 1), next(topology_.ranks(), 0);
  if (!kicked_.empty()) dirty.swap(kicked_);
  kicked_.clear();
  for (int pass = 0; pass < max_passes; ++pass) {
    bool improved = false;
    std::fill(next.begin(), next.end(), 0);
    for (SlotId a = 0; a < slots; ++a) {
      if (!dirty[topology_.RankOfSlot(a)] && !next[topology_.RankOfSlot(a)]) continue;
      const ExpertId ea = row_[a];
      const RankId ga = topology_.RankOfSlot(a);
      double best = current - 1e-12 * std::max(1.0, current);
      SlotId best_b = -1;
      ExpertId best_target = kEmptySlot;
      // Swaps with the slots of other GPUs (one free slot per GPU stands for all of them).
      for (RankId gb = 0; gb < topology_.ranks(); ++gb) {
        if (gb == ga) continue;
        bool free_tried = false;
        for (SlotId b = gb * per_gpu; b < (gb + 1) * per_gpu; ++b) {
          const ExpertId eb = row_[b];
          if (eb == ea) continue;
          if (eb == kEmptySlot) {
            if (free_tried) continue;
            free_tried = true;
          }
          if ((ea != kEmptySlot && Holds(gb, ea)) || (eb != kEmptySlot && Holds(ga, eb))) {
            continue;
          }
          const double score = ScoreSwap(a, b);
          if (score < best) best = score, best_b = b, best_target = kEmptySlot;
        }
      }
      // Re-targets: a replica (or a free slot) becomes a copy of another expert.
      if (ea == kEmptySlot || copies_[ea].size() >= 2) {
        for (ExpertId x = 0; x < experts_; ++x) {
          if (x == ea || Holds(ga, x)) continue;
          const double score = ScoreRetarget(a, x);
          if (score < best) best = score, best_b = -1, best_target = x;
        }
      }
      if (best_b >= 0) {
        SwapSlots(a, best_b);
        next[topology_.RankOfSlot(best_b)] = 1;
      } else if (best_target != kEmptySlot) {
        SetSlot(a, best_target);
      } else {
        continue;
      }
      next[ga] = 1;
      current = Objective();
      improved = true;
    }
    if (!improved) break;
    dirty.swap(next);
  }
  return current;
}

}  // namespace grace

namespace grace {

void SlotPlacementSearch::Kick(std::mt19937& rng, int swaps) {
  const int slots = static_cast<int>(row_.size());
  kicked_.assign(topology_.ranks(), 0);
  for (int done = 0, tries = 0; done < swaps && tries < 100 * swaps; ++tries) {
    const SlotId a = static_cast<SlotId>(rng() % slots), b = static_cast<SlotId>(rng() % slots);
    const RankId ga = topology_.RankOfSlot(a), gb = topology_.RankOfSlot(b);
    const ExpertId ea = row_[a], eb = row_[b];
    if (ga == gb || ea == eb || (ea != kEmptySlot && Holds(gb, ea)) ||
        (eb != kEmptySlot && Holds(ga, eb))) {
      continue;
    }
    SwapSlots(a, b);
    kicked_[ga] = kicked_[gb] = 1;
    ++done;
  }
}

}  // namespace grace
