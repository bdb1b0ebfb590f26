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

bool SlotPlacementSearch::HomeRoutes(std::span<const RankId> copies,
                                     std::vector<RankId>* route) const {
  const int ranks = topology_.ranks();
  if (copies.size() == 1) {
    route->assign(ranks, copies[0]);
    return true;
  }
  if (static_cast<int>(copies.size()) != topology_.nodes) return false;
  std::vector<RankId>& node_copy = const_cast<std::vector<RankId>&>(node_copy_);
  node_copy.assign(topology_.nodes, -1);
  for (RankId g : copies) {
    RankId& at = node_copy[topology_.NodeOfRank(g)];
    if (at >= 0) return false;
    at = g;
  }
  // One copy per node: a holder uses its own, every other GPU its node's (Choose's tiers).
  route->resize(ranks);
  for (RankId h = 0; h < ranks; ++h) (*route)[h] = node_copy[topology_.NodeOfRank(h)];
  return true;
}

bool SlotPlacementSearch::ScoreCopies(std::span<const ExpertId> changed,
                                      std::span<const std::vector<RankId>> after, double* score) {
  for (size_t i = 0; i < changed.size(); ++i) {
    if (!HomeRoutes(copies_[changed[i]], &route_from_[i]) || !HomeRoutes(after[i], &route_to_[i])) {
      return false;
    }
  }
  scratch_ = traffic_;
  for (size_t i = 0; i < changed.size(); ++i) {
    counters_->AddReroute(changed[i], route_from_[i], route_to_[i], &scratch_);
  }
  if (changed.size() == 2) {
    counters_->AddPairCorrection(changed[0], route_from_[0], route_to_[0], changed[1],
                                 route_from_[1], route_to_[1], TokensOf(changed[0]), gpu_count_,
                                 node_count_, &scratch_);
  }
  *score = objective_.Score(scratch_, topology_, params_);
  return true;
}

namespace {

// `copies` (ascending) without `out` and with `in` (-1: none), ascending.
void ReplaceCopy(const std::vector<RankId>& copies, RankId out, RankId in,
                 std::vector<RankId>* after) {
  after->clear();
  for (RankId g : copies) {
    if (g != out) after->push_back(g);
  }
  if (in >= 0) after->insert(std::lower_bound(after->begin(), after->end(), in), in);
}

}  // namespace

double SlotPlacementSearch::ScoreByTokens(std::span<const ExpertId> changed,
                                          std::span<const std::vector<RankId>> after) {
  scratch_ = traffic_;
  if (stamp_[0].empty()) {
    stamp_[0].assign(home_.size(), -1);
    stamp_[1].assign(home_.size(), -1);
    other_pair_.assign(home_.size(), -1);
  }
  ++generation_;
  const int two = changed.size() == 2;
  // The other expert's pair in each token, if it has one (stamped with this generation).
  if (two) {
    for (int i = pair_begin_[changed[1]]; i < pair_begin_[changed[1] + 1]; ++i) {
      const int p = pairs_[i];
      stamp_[1][p / top_k_] = generation_;
      other_pair_[p / top_k_] = p;
    }
  }
  for (size_t x = 0; x < changed.size(); ++x) {
    const ExpertId e = changed[x];
    for (int i = pair_begin_[e]; i < pair_begin_[e + 1]; ++i) {
      const int p = pairs_[i];
      const int t = p / top_k_;
      RankId out[2] = {used_[p], -1}, in[2] = {ChooseAmong(after[x], p), -1};
      if (x == 0 && two && stamp_[1][t] == generation_) {
        stamp_[0][t] = generation_;  // both experts' pairs of t are done here
        const int q = other_pair_[t];
        out[1] = used_[q];
        in[1] = ChooseAmong(after[1], q);
      } else if (x == 1 && stamp_[0][t] == generation_) {
        continue;
      }
      if (out[0] == in[0] && out[1] == in[1]) continue;
      AddTokenChange(t, out, in);
    }
  }
  return objective_.Score(scratch_, topology_, params_);
}

void SlotPlacementSearch::AddTokenChange(int t, const RankId out[2], const RankId in[2]) {
  const RankId h = home_[t];
  const uint16_t* gpu = gpu_count_.data() + static_cast<size_t>(t) * topology_.ranks();
  const uint16_t* node = node_count_.data() + static_cast<size_t>(t) * topology_.nodes;
  if (out[1] == in[1]) {  // one pair moves: out[0] -> in[0], they differ
    const RankId a = out[0], b = in[0];
    if (a >= 0) {
      scratch_.rank_load[a] -= 1;
      if (gpu[a] == 1) counters_->AddGpuSendFast(h, a, -1, &scratch_);
    }
    if (b >= 0) {
      scratch_.rank_load[b] += 1;
      if (gpu[b] == 0) counters_->AddGpuSendFast(h, b, 1, &scratch_);
    }
    const NodeId na = a < 0 ? -1 : node_of_[a], nb = b < 0 ? -1 : node_of_[b];
    if (na == nb) return;
    if (na >= 0 && node[na] == 1) counters_->AddNodeSendFast(h, na, -1, &scratch_);
    if (nb >= 0 && node[nb] == 0) counters_->AddNodeSendFast(h, nb, 1, &scratch_);
    return;
  }
  const RankId at[4] = {out[0], in[0], out[1], in[1]};
  NodeId nodes[4];
  for (int k = 0; k < 4; ++k) nodes[k] = at[k] < 0 ? -1 : node_of_[at[k]];
  for (int k = 0; k < 4; ++k) {
    if (at[k] < 0 || std::find(at, at + k, at[k]) != at + k) continue;
    const int c = gpu[at[k]];
    const int after = c - (at[k] == at[0]) + (at[k] == at[1]) - (at[k] == at[2]) + (at[k] == at[3]);
    scratch_.rank_load[at[k]] += after - c;
    const int change = (after > 0) - (c > 0);
    if (change != 0) counters_->AddGpuSendFast(h, at[k], change, &scratch_);
  }
  for (int k = 0; k < 4; ++k) {
    if (nodes[k] < 0 || std::find(nodes, nodes + k, nodes[k]) != nodes + k) continue;
    const int c = node[nodes[k]];
    const int after = c - (nodes[k] == nodes[0]) + (nodes[k] == nodes[1]) - (nodes[k] == nodes[2]) +
                      (nodes[k] == nodes[3]);
    const int change = (after > 0) - (c > 0);
    if (change != 0) counters_->AddNodeSendFast(h, nodes[k], change, &scratch_);
  }
}

double SlotPlacementSearch::ScoreApplied(SlotId a, SlotId b) {
  // Applied and taken back: the counts come back exactly, so the counters need not follow.
  track_ = false;
  SwapSlots(a, b);
  const double score = Objective();
  SwapSlots(a, b);
  track_ = true;
  return score;
}

double SlotPlacementSearch::ScoreSwap(SlotId a, SlotId b) {
  const ExpertId ea = row_[a], eb = row_[b];
  if (!fast_) return ScoreApplied(a, b);
  const RankId ga = topology_.RankOfSlot(a), gb = topology_.RankOfSlot(b);
  if (!Single(ea) || !Single(eb)) {
    ExpertId changed[2];
    int n = 0;
    if (ea != kEmptySlot) ReplaceCopy(copies_[ea], ga, gb, &after_[n]), changed[n++] = ea;
    if (eb != kEmptySlot) ReplaceCopy(copies_[eb], gb, ga, &after_[n]), changed[n++] = eb;
    double score = 0;
    if (ScoreCopies({changed, static_cast<size_t>(n)}, {after_, static_cast<size_t>(n)}, &score)) {
      return score;
    }
    return ScoreByTokens({changed, static_cast<size_t>(n)}, {after_, static_cast<size_t>(n)});
  }
  scratch_ = traffic_;
  double moved = 0;  // pairs from ga to gb
  if (ea != kEmptySlot && eb != kEmptySlot) {
    counters_->AddSwap(ea, ga, eb, gb, TokensOf(ea), gpu_count_, node_count_, &scratch_);
    moved = static_cast<double>(TokensOf(ea).size()) - TokensOf(eb).size();
  } else if (ea != kEmptySlot) {
    counters_->AddMove(ea, ga, gb, &scratch_);
    moved = static_cast<double>(TokensOf(ea).size());
  } else {
    counters_->AddMove(eb, gb, ga, &scratch_);
    moved = -static_cast<double>(TokensOf(eb).size());
  }
  scratch_.rank_load[ga] -= moved;
  scratch_.rank_load[gb] += moved;
  return objective_.Score(scratch_, topology_, params_);
}

double SlotPlacementSearch::ScoreRetarget(SlotId a, ExpertId x) {
  const ExpertId ea = row_[a];
  const RankId ga = topology_.RankOfSlot(a);
  if (fast_) {
    ExpertId changed[2];
    int n = 0;
    if (ea != kEmptySlot) ReplaceCopy(copies_[ea], ga, -1, &after_[n]), changed[n++] = ea;
    ReplaceCopy(copies_[x], -1, ga, &after_[n]), changed[n++] = x;
    double score = 0;
    if (ScoreCopies({changed, static_cast<size_t>(n)}, {after_, static_cast<size_t>(n)}, &score)) {
      return score;
    }
    return ScoreByTokens({changed, static_cast<size_t>(n)}, {after_, static_cast<size_t>(n)});
  }
  track_ = false;
  SetSlot(a, x);
  const double score = Objective();
  SetSlot(a, ea);
  track_ = true;
  return score;
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
