// The re-placement decision's candidate generators (ReplacementDecider, policy/decision.h):
// cheap actions (add or drop a replica, swap experts between GPUs), sequences of swaps, minimal
// re-plans from the current placement, and re-replication of a regrouped row. Decide() in
// policy/decision.cc scores and chooses among them.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "policy/decision.h"
#include "policy/incremental_replan.h"
#include "policy/locality_routing.h"

namespace grace {
namespace {

// New copies tried per hot expert: the coolest GPU and the coolest GPUs of the next coolest
// nodes without a copy.
constexpr int kMaxReplicaTargets = 4;

}  // namespace

void ReplacementDecider::CheapCandidates(const LayerState& current, const LayerStats& forecast,
                                         double base_ms, const LayerCost& base_cost,
                                         std::vector<Candidate>* out) const {
  const Topology& t = topology_;
  const std::vector<ExpertId>& row = current.row;
  const int experts = forecast.num_experts();
  std::vector<int> copies(experts, 0);
  for (ExpertId e : row) {
    if (e != kEmptySlot) ++copies[e];
  }
  auto holds = [&](RankId r, ExpertId e) {
    for (int i = 0; i < t.slots_per_gpu; ++i) {
      if (row[r * t.slots_per_gpu + i] == e) return true;
    }
    return false;
  };
  const std::vector<double>& rank_load = base_cost.rank_load;
  std::vector<RankId> by_load(t.ranks());
  std::iota(by_load.begin(), by_load.end(), 0);
  std::sort(by_load.begin(), by_load.end(),
            [&](RankId a, RankId b) { return rank_load[a] < rank_load[b]; });
  auto per_replica = [&](ExpertId e) { return forecast.load[e] / std::max(1, copies[e]); };
  std::vector<ExpertId> hot(experts);
  std::iota(hot.begin(), hot.end(), 0);
  std::sort(hot.begin(), hot.end(),
            [&](ExpertId a, ExpertId b) { return per_replica(a) > per_replica(b); });
  const int n = options_.candidates_per_kind;

  // The least useful spare replica of a GPU: a copy of an expert with several, lowest load
  // per replica. Returns its slot or -1.
  auto spare_slot_on = [&](RankId r) {
    SlotId best = -1;
    for (int i = 0; i < t.slots_per_gpu; ++i) {
      const SlotId s = r * t.slots_per_gpu + i;
      const ExpertId e = row[s];
      if (e == kEmptySlot) return s;
      if (copies[e] < 2) continue;
      if (best < 0 || per_replica(e) < per_replica(row[best])) best = s;
    }
    return best;
  };

  // Add a replica of a hot expert: on the coolest GPU without one, and on the coolest GPU of
  // each node without one (a copy there keeps that node's tokens off the NIC).
  for (int i = 0; i < std::min(n, experts); ++i) {
    const ExpertId e = hot[i];
    std::vector<RankId> targets;
    std::vector<char> node_has(t.nodes, 0);
    for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
      if (row[s] == e) node_has[t.NodeOfSlot(s)] = 1;
    }
    std::vector<char> node_tried(t.nodes, 0);
    for (RankId r : by_load) {
      // The coolest nodes only: at a thousand GPUs every node would be a candidate.
      if (static_cast<int>(targets.size()) == kMaxReplicaTargets) break;
      if (holds(r, e) || spare_slot_on(r) < 0 || row[spare_slot_on(r)] == e) continue;
      const NodeId node = t.NodeOfRank(r);
      if (targets.empty() || (!node_has[node] && !node_tried[node])) {
        targets.push_back(r);
        node_tried[node] = 1;
      }
    }
    for (RankId r : targets) {
      const SlotId s = spare_slot_on(r);
      std::vector<ExpertId> next = row;
      const ExpertId replaced = next[s];
      next[s] = e;
      std::string reason = "expert " + std::to_string(e) + " forecast " +
                           std::to_string(static_cast<int64_t>(forecast.load[e])) + " over " +
                           std::to_string(copies[e]) + " replica(s): new copy on GPU " +
                           std::to_string(r);
      if (replaced != kEmptySlot) reason += " in place of a spare of " + std::to_string(replaced);
      out->push_back(Score(ActionKind::kAddReplica, std::move(reason), std::move(next), row,
                           forecast, base_ms));
    }
  }
  // Drop the least useful spare replica.
  {
    SlotId worst = -1;
    for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
      const ExpertId e = row[s];
      if (e == kEmptySlot || copies[e] < 2) continue;
      if (worst < 0 || per_replica(e) < per_replica(row[worst])) worst = s;
    }
    if (worst >= 0) {
      std::vector<ExpertId> next = row;
      next[worst] = kEmptySlot;
      out->push_back(Score(ActionKind::kDropReplica,
                           "spare replica of expert " + std::to_string(row[worst]) + " on GPU " +
                               std::to_string(t.RankOfSlot(worst)) + " carries least load",
                           std::move(next), row, forecast, base_ms));
    }
  }
  SwapSequences(row, row, forecast, base_ms, ActionKind::kSwapExperts, "", out);

  // Re-replicate: primaries stay, the spare slots are re-assigned to the experts with the highest
  // forecast load per replica, each new copy on the least loaded GPU without one (a node without
  // one first). Then swap sequences on top of it.
  std::vector<ExpertId> rerep = Rereplicate(row, forecast);
  if (rerep != row) {
    MigrationLoad moved(t);
    moved.Add(row, rerep, 1);
    const std::string what = "re-replicate (" + std::to_string(moved.copies) + " new copies)";
    out->push_back(Score(ActionKind::kAddReplica, what + " for the forecast's hot experts", rerep,
                         row, forecast, base_ms));
    SwapSequences(rerep, row, forecast, base_ms, ActionKind::kAddReplica, what + " then ", out);
  }
}

// Swaps between GPUs, chosen greedily on a load proxy (each replica carries its expert's load
// over its replica count): each swap takes the one exchange that lowers the hottest GPU most.
// Sequences of 1, 2, 4, ... swaps from `start` are candidates, so the cost model and the
// migration cost pick how far to go.
void ReplacementDecider::SwapSequences(const std::vector<ExpertId>& start,
                                       std::span<const ExpertId> current_row,
                                       const LayerStats& forecast, double base_ms, ActionKind kind,
                                       const std::string& prefix,
                                       std::vector<Candidate>* out) const {
  const Topology& t = topology_;
  std::vector<int> copies(forecast.num_experts(), 0);
  for (ExpertId e : start) {
    if (e != kEmptySlot) ++copies[e];
  }
  auto per_replica = [&](ExpertId e) { return forecast.load[e] / std::max(1, copies[e]); };
  std::vector<ExpertId> next = start;
  std::vector<double> load_of_rank(t.ranks(), 0.0);
  auto slot_load = [&](SlotId s) { return next[s] == kEmptySlot ? 0.0 : per_replica(next[s]); };
  for (SlotId s = 0; s < static_cast<SlotId>(next.size()); ++s) {
    load_of_rank[t.RankOfSlot(s)] += slot_load(s);
  }
  auto holds_next = [&](RankId r, ExpertId e) {
    for (int i = 0; i < t.slots_per_gpu; ++i) {
      if (next[r * t.slots_per_gpu + i] == e) return true;
    }
    return false;
  };
  const int max_swaps = std::max(1, options_.max_swaps);
  int swaps = 0, next_emit = 1;
  std::string moved;
  while (swaps < max_swaps) {
    const RankId hot_rank = static_cast<RankId>(
        std::max_element(load_of_rank.begin(), load_of_rank.end()) - load_of_rank.begin());
    const double hot_load = load_of_rank[hot_rank];
    double best_peak = hot_load;
    SlotId best_a = -1, best_b = -1;
    for (int i = 0; i < t.slots_per_gpu; ++i) {
      const SlotId a = hot_rank * t.slots_per_gpu + i;
      const ExpertId ea = next[a];
      if (ea == kEmptySlot) continue;
      for (SlotId b = 0; b < static_cast<SlotId>(next.size()); ++b) {
        const RankId rb = t.RankOfSlot(b);
        if (rb == hot_rank) continue;
        const ExpertId eb = next[b];
        if (eb == ea || holds_next(rb, ea) || (eb != kEmptySlot && holds_next(hot_rank, eb)))
          continue;
        const double delta = slot_load(a) - slot_load(b);
        if (delta <= 0) continue;
        const double peak = std::max(hot_load - delta, load_of_rank[rb] + delta);
        if (peak < best_peak - 1e-9) {
          best_peak = peak;
          best_a = a;
          best_b = b;
        }
      }
    }
    if (best_a < 0) break;
    const double delta = slot_load(best_a) - slot_load(best_b);
    load_of_rank[hot_rank] -= delta;
    load_of_rank[t.RankOfSlot(best_b)] += delta;
    if (!moved.empty()) moved += ", ";
    moved += std::to_string(next[best_a]) + (next[best_b] == kEmptySlot
                                                 ? std::string("->empty")
                                                 : "<->" + std::to_string(next[best_b]));
    std::swap(next[best_a], next[best_b]);
    ++swaps;
    if (swaps == next_emit || swaps == max_swaps) {
      next_emit *= 2;
      out->push_back(Score(
          kind,
          prefix + std::to_string(swaps) + " swap(s) off the hottest GPUs (experts " + moved + ")",
          next, current_row, forecast, base_ms));
    }
  }
  if (swaps > 0 && swaps != next_emit / 2 && swaps != max_swaps) {
    out->push_back(Score(
        kind,
        prefix + std::to_string(swaps) + " swap(s) off the hottest GPUs (experts " + moved + ")",
        next, current_row, forecast, base_ms));
  }
}

// Runs only when some candidate shows that the layer could gain enough per step: the search
// costs a few dozen cost-model evaluations per move.
void ReplacementDecider::MinimalReplans(const LayerState& current, const LayerStats& forecast,
                                        double base_ms, double min_relative_gain,
                                        std::span<const ExpertId> target,
                                        std::vector<Candidate>* out) const {
  // The search refines what re-planning could gain: when the planner's own plan of the forecast
  // gains nothing over the current row, the placement is not stale (without a planner, the
  // cheap candidates say whether it is).
  double best_step_gain = 0;
  for (const Candidate& c : *out) {
    if (target.empty() || c.kind == ActionKind::kRegroupLayer) {
      best_step_gain = std::max(best_step_gain, base_ms - c.step_ms);
    }
  }
  if (best_step_gain < min_relative_gain * base_ms || best_step_gain <= 0) return;
  IncrementalReplanOptions options;
  options.horizon_steps = horizon_;
  options.expert_bytes = options_.expert_bytes;
  options.byte_budget = options_.byte_budget;
  options.max_moves = options_.minimal_replan_moves;
  options.evaluations_per_round = options_.minimal_replan_evaluations > 0
                                      ? options_.minimal_replan_evaluations
                                      : std::max(32, forecast.num_experts() / 3);
  options.max_replicas_per_expert = options_.max_replicas_per_expert;
  if (!target.empty()) {
    // The planner's row with the changes that do not pay undone.
    std::optional<IncrementalStep> pruned =
        PruneReplan(current.row, target, forecast, topology_, params_, options);
    if (pruned && pruned->bytes > 0) {
      out->push_back(Score(ActionKind::kMinimalReplan,
                           planner_->name() + " re-plan with " + pruned->move,
                           std::move(pruned->row), current.row, forecast, base_ms));
    }
  }
  // Two searches: one climbing the modeled time itself, and one guided past its plateaus (when
  // several GPUs are about as hot, no single move lowers the time; IncrementalReplanOptions).
  // Neither finds the better sequence everywhere: on DeepSeek-V3 at 400 Gb/s the guided one
  // gains more, on OLMoE at 25 Gb/s the plain one. Both are scored on the real time.
  for (const bool guided : {false, true}) {
    options.guided = guided;
    const std::vector<IncrementalStep> steps =
        IncrementalReplan(current.row, target, forecast, topology_, params_, options);
    // Prefixes of 1, 2, 4, ... moves, the whole sequence, and the one with the best net benefit.
    size_t best = 0;
    double best_net = -1e300;
    for (size_t i = 0; i < steps.size(); ++i) {
      const double net = (base_ms - steps[i].step_ms) * horizon_ - steps[i].transfer_ms;
      if (net > best_net) {
        best_net = net;
        best = i;
      }
    }
    std::string moves;
    for (size_t i = 0; i < steps.size(); ++i) {
      if (!moves.empty()) moves += ", ";
      moves += steps[i].move;
      const bool power_of_two = ((i + 1) & i) == 0;
      if (!power_of_two && i + 1 != steps.size() && i != best) continue;
      const bool seen = std::any_of(out->begin(), out->end(), [&](const Candidate& c) {
        return c.kind == ActionKind::kMinimalReplan && c.state.row == steps[i].row;
      });
      if (seen) continue;
      out->push_back(Score(ActionKind::kMinimalReplan,
                           std::to_string(i + 1) + " move(s) from the current placement" +
                               (guided ? ", guided" : "") + " (" + moves + ")",
                           steps[i].row, current.row, forecast, base_ms));
    }
  }
}

std::vector<ExpertId> ReplacementDecider::Rereplicate(const std::vector<ExpertId>& row,
                                                      const LayerStats& forecast) const {
  const Topology& t = topology_;
  const int experts = forecast.num_experts();
  // Primaries: each expert's first slot.
  std::vector<char> primary(row.size(), 0), seen(experts, 0);
  int spare = 0;
  for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
    const ExpertId e = row[s];
    if (e != kEmptySlot && !seen[e]) {
      seen[e] = 1;
      primary[s] = 1;
    } else {
      ++spare;
    }
  }
  // Desired copies: highest load per replica first, at most one per GPU.
  std::vector<int> want(experts, 1);
  for (int i = 0; i < spare; ++i) {
    ExpertId best = -1;
    for (ExpertId e = 0; e < experts; ++e) {
      if (want[e] >= t.ranks()) continue;
      if (options_.max_replicas_per_expert > 0 && want[e] >= options_.max_replicas_per_expert)
        continue;
      if (best < 0 || forecast.load[e] / want[e] > forecast.load[best] / want[best]) best = e;
    }
    if (best < 0 || forecast.load[best] <= 0) break;
    ++want[best];
  }
  // Existing spare copies that are still wanted stay where they are; have[e] is then the number
  // of copies of e in `next`.
  std::vector<ExpertId> next = row;
  std::vector<int> have(experts, 0);
  for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
    if (primary[s]) ++have[row[s]];
  }
  for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
    if (primary[s] || row[s] == kEmptySlot) continue;
    if (have[row[s]] < want[row[s]]) {
      ++have[row[s]];
    } else {
      next[s] = kEmptySlot;
    }
  }
  // New copies, hottest per replica first, onto the least loaded GPU that lacks one, on a node
  // without a copy when there is one: under locality routing a second copy on the same node
  // keeps none of the other nodes' tokens off the NIC. When every free slot is on nodes that
  // already hold the expert, a single-copy expert of another node makes room: it moves into the
  // free slot and the new copy takes its place (two copies across the NICs, in opposite
  // directions, instead of a copy that saves no traffic).
  std::vector<double> rank_load(t.ranks(), 0.0);
  for (SlotId s = 0; s < static_cast<SlotId>(next.size()); ++s) {
    if (next[s] != kEmptySlot) rank_load[t.RankOfSlot(s)] += forecast.load[next[s]] / want[next[s]];
  }
  std::vector<ExpertId> order(experts);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](ExpertId a, ExpertId b) {
    return forecast.load[a] / want[a] > forecast.load[b] / want[b];
  });
  const SlotId slots = static_cast<SlotId>(next.size());
  for (ExpertId e : order) {
    while (have[e] < want[e]) {
      std::vector<char> node_has(t.nodes, 0), gpu_has(t.ranks(), 0);
      for (SlotId s = 0; s < slots; ++s) {
        if (next[s] == e) {
          node_has[t.NodeOfSlot(s)] = 1;
          gpu_has[t.RankOfSlot(s)] = 1;
        }
      }
      // The coolest free slot, on a node without a copy first.
      SlotId free = -1;
      auto better = [&](SlotId a, SlotId b) {
        const RankId ra = t.RankOfSlot(a), rb = t.RankOfSlot(b);
        if (node_has[t.NodeOfRank(ra)] != node_has[t.NodeOfRank(rb)])
          return !node_has[t.NodeOfRank(ra)];
        return rank_load[ra] < rank_load[rb];
      };
      for (SlotId s = 0; s < slots; ++s) {
        if (next[s] != kEmptySlot || gpu_has[t.RankOfSlot(s)]) continue;
        if (free < 0 || better(s, free)) free = s;
      }
      if (free < 0) break;
      SlotId target = free;
      if (node_has[t.NodeOfSlot(free)]) {
        // Make room on a node without a copy: the single-copy expert whose GPU ends coolest.
        SlotId room = -1;
        double room_load = 0;
        for (SlotId s = 0; s < slots; ++s) {
          const ExpertId y = next[s];
          if (y == kEmptySlot || y == e || have[y] != 1 || node_has[t.NodeOfSlot(s)]) continue;
          const double load = rank_load[t.RankOfSlot(s)] - forecast.load[y];
          if (room < 0 || load < room_load) {
            room = s;
            room_load = load;
          }
        }
        if (room >= 0) {
          const ExpertId y = next[room];
          next[free] = y;
          rank_load[t.RankOfSlot(free)] += forecast.load[y];
          rank_load[t.RankOfSlot(room)] -= forecast.load[y];
          target = room;
        }
      }
      next[target] = e;
      rank_load[t.RankOfSlot(target)] += forecast.load[e] / want[e];
      ++have[e];
    }
  }
  return next;
}

}  // namespace grace
