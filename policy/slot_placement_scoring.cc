// SlotPlacementSearch's scoring of candidates without applying them (see the header): one-copy
// changes and home-routed reroutes from SendCounters, the rest token by token.
#include <algorithm>

#include "policy/slot_placement_search.h"

namespace grace {

bool SlotPlacementSearch::HomeRoutes(std::span<const RankId> copies, std::vector<RankId>* route) {
  const int ranks = topology_.ranks();
  if (copies.size() == 1) {
    route->assign(ranks, copies[0]);
    return true;
  }
  if (static_cast<int>(copies.size()) != topology_.nodes) return false;
  std::vector<RankId>& node_copy = node_copy_;
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

}  // namespace grace
