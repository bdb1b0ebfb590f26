#include "policy/decision.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "policy/incremental_replan.h"
#include "policy/locality_routing.h"

namespace grace {

const char* ActionKindName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kReweight: return "reweight";
    case ActionKind::kAddReplica: return "add_replica";
    case ActionKind::kDropReplica: return "drop_replica";
    case ActionKind::kSwapExperts: return "swap_experts";
    case ActionKind::kRegroupLayer: return "regroup_layer";
    case ActionKind::kReplanAll: return "replan_all";
    case ActionKind::kMinimalReplan: return "minimal_replan";
  }
  return "unknown";
}

uint64_t ExpertWeightBytes(const CostParams& params) {
  return 3ull * static_cast<uint64_t>(params.hidden_size) *
         static_cast<uint64_t>(params.expert_ffn_size) * 2ull;
}

MigrationLoad::MigrationLoad(const Topology& t)
    : topology(&t), intra_in(t.ranks(), 0.0), inter_in(t.nodes, 0.0) {}

void MigrationLoad::Add(std::span<const ExpertId> from, std::span<const ExpertId> to,
                        uint64_t expert_bytes) {
  const Topology& t = *topology;
  // Where each expert is in `from`, so that a copy looks at its expert's slots only.
  ExpertId experts = 0;
  for (ExpertId e : from) experts = std::max(experts, e + 1);
  for (ExpertId e : to) experts = std::max(experts, e + 1);
  std::vector<int> begin(experts + 1, 0);
  for (ExpertId e : from) {
    if (e != kEmptySlot) ++begin[e + 1];
  }
  std::partial_sum(begin.begin(), begin.end(), begin.begin());
  std::vector<SlotId> holders(begin.back());
  std::vector<int> fill(begin.begin(), begin.end() - 1);
  for (SlotId o = 0; o < static_cast<SlotId>(from.size()); ++o) {
    if (from[o] != kEmptySlot) holders[fill[from[o]]++] = o;
  }
  for (SlotId s = 0; s < static_cast<SlotId>(to.size()); ++s) {
    const ExpertId e = to[s];
    if (e == kEmptySlot || from[s] == e) continue;
    const RankId dst = t.RankOfSlot(s);
    bool on_gpu = false, on_node = false;
    for (int i = begin[e]; i < begin[e + 1]; ++i) {
      const SlotId o = holders[i];
      on_gpu = on_gpu || t.RankOfSlot(o) == dst;
      on_node = on_node || t.NodeOfSlot(o) == t.NodeOfRank(dst);
    }
    bytes += expert_bytes;
    ++copies;
    if (on_gpu) continue;  // a copy inside the GPU: not a link transfer
    if (on_node) {
      intra_in[dst] += static_cast<double>(expert_bytes);
    } else {
      inter_in[t.NodeOfRank(dst)] += static_cast<double>(expert_bytes);
    }
  }
}

double MigrationLoad::TransferMs() const {
  double intra = 0, inter = 0;
  for (double b : intra_in) intra = std::max(intra, b);
  for (double b : inter_in) inter = std::max(inter, b);
  return std::max(intra / topology->intra_node_bytes_per_s(),
                  inter / topology->inter_node_bytes_per_s()) *
         1e3;
}

namespace {

// New copies tried per hot expert: the coolest GPU and the coolest GPUs of the next coolest
// nodes without a copy.
constexpr int kMaxReplicaTargets = 4;

// Greedy maximum-overlap matching: match[a] = b for the pairs with the largest overlap first.
std::vector<int> GreedyMatch(const std::vector<std::vector<int>>& overlap) {
  const int n = static_cast<int>(overlap.size());
  std::vector<int> match(n, -1);
  std::vector<char> used(n, 0);
  for (int round = 0; round < n; ++round) {
    int best_a = -1, best_b = -1, best = -1;
    for (int a = 0; a < n; ++a) {
      if (match[a] >= 0) continue;
      for (int b = 0; b < n; ++b) {
        if (!used[b] && overlap[a][b] > best) {
          best = overlap[a][b];
          best_a = a;
          best_b = b;
        }
      }
    }
    match[best_a] = best_b;
    used[best_b] = 1;
  }
  return match;
}

int Overlap(std::span<const ExpertId> a, std::span<const ExpertId> b) {
  int n = 0;
  std::vector<char> used(b.size(), 0);
  for (ExpertId e : a) {
    if (e == kEmptySlot) continue;
    for (size_t j = 0; j < b.size(); ++j) {
      if (!used[j] && b[j] == e) {
        used[j] = 1;
        ++n;
        break;
      }
    }
  }
  return n;
}

}  // namespace

std::vector<ExpertId> AlignRowToCurrent(std::span<const ExpertId> from,
                                        std::span<const ExpertId> to, const Topology& topology) {
  const int per_gpu = topology.slots_per_gpu;
  const int gpn = topology.gpus_per_node;
  auto gpu = [&](std::span<const ExpertId> row, RankId r) {
    return row.subspan(static_cast<size_t>(r) * per_gpu, per_gpu);
  };
  auto node = [&](std::span<const ExpertId> row, NodeId n) {
    return row.subspan(static_cast<size_t>(n) * gpn * per_gpu, static_cast<size_t>(gpn) * per_gpu);
  };
  // Planners label nodes and GPUs arbitrarily, and the cost model does not care which node is
  // which, nor which GPU of a node: relabel the new row's nodes, then the GPUs inside each node,
  // to overlap the current row most.
  std::vector<std::vector<int>> node_overlap(topology.nodes, std::vector<int>(topology.nodes));
  for (NodeId a = 0; a < topology.nodes; ++a) {
    for (NodeId b = 0; b < topology.nodes; ++b)
      node_overlap[a][b] = Overlap(node(to, a), node(from, b));
  }
  const std::vector<int> node_match = GreedyMatch(node_overlap);
  std::vector<ExpertId> out(to.size(), kEmptySlot);
  for (NodeId a = 0; a < topology.nodes; ++a) {
    const NodeId b = node_match[a];
    std::vector<std::vector<int>> gpu_overlap(gpn, std::vector<int>(gpn));
    for (int i = 0; i < gpn; ++i) {
      for (int j = 0; j < gpn; ++j) {
        gpu_overlap[i][j] = Overlap(gpu(to, a * gpn + i), gpu(from, b * gpn + j));
      }
    }
    const std::vector<int> gpu_match = GreedyMatch(gpu_overlap);
    for (int i = 0; i < gpn; ++i) {
      std::span<const ExpertId> src = gpu(to, a * gpn + i);
      std::copy(src.begin(), src.end(),
                out.begin() + static_cast<size_t>(b * gpn + gpu_match[i]) * per_gpu);
    }
  }
  // Inside each GPU, experts that are already there keep their slot.
  std::vector<ExpertId> relabelled = out;
  for (RankId r = 0; r < topology.ranks(); ++r) {
    const size_t begin = static_cast<size_t>(r) * per_gpu;
    std::vector<ExpertId> pending(relabelled.begin() + begin, relabelled.begin() + begin + per_gpu);
    std::vector<char> taken(per_gpu, 0);
    for (int i = 0; i < per_gpu; ++i) {
      const ExpertId e = from[begin + i];
      auto it = std::find(pending.begin(), pending.end(), e);
      if (e == kEmptySlot || it == pending.end()) continue;
      out[begin + i] = e;
      taken[i] = 1;
      *it = kEmptySlot - 1;  // consumed
    }
    // The rest fill the remaining slots in order, empties last.
    std::stable_partition(pending.begin(), pending.end(), [](ExpertId e) { return e >= 0; });
    size_t next = 0;
    for (int i = 0; i < per_gpu; ++i) {
      if (taken[i]) continue;
      while (next < pending.size() && pending[next] < kEmptySlot) ++next;
      out[begin + i] = next < pending.size() ? pending[next++] : kEmptySlot;
    }
  }
  return out;
}

ReplacementDecider::ReplacementDecider(const Topology& topology, const CostParams& params,
                                       DecisionOptions options, const PlacementPolicy* planner)
    : topology_(topology), params_(params), options_(options), planner_(planner) {
  if (options_.expert_bytes == 0) options_.expert_bytes = ExpertWeightBytes(params);
  options_.horizon_steps = std::max(1, options_.horizon_steps);
  horizon_ = options_.horizon_steps;
}

void ReplacementDecider::SetOptions(const DecisionOptions& options) {
  options_ = options;
  if (options_.expert_bytes == 0) options_.expert_bytes = ExpertWeightBytes(params_);
  options_.horizon_steps = std::max(1, options_.horizon_steps);
  horizon_ = options_.horizon_steps;
  if (options_.adapt_horizon && regimes_seen_ > 0) {
    horizon_ =
        static_cast<int>(std::clamp(regime_steps_sum_ / regimes_seen_, options_.horizon_steps / 2.0,
                                    options_.horizon_steps * 4.0));
  }
}

void ReplacementDecider::ObserveRegimeChange(int64_t step) {
  // Alarms of several layers for one shift arrive within a few intervals: count them once.
  const int64_t length = step - regime_start_;
  if (length < std::max(4, options_.cooldown_steps)) return;
  regime_start_ = step;
  ++regimes_seen_;
  regime_steps_sum_ += static_cast<double>(length);
  if (!options_.adapt_horizon) return;
  const double mean = regime_steps_sum_ / regimes_seen_;
  horizon_ = static_cast<int>(
      std::clamp(mean, options_.horizon_steps / 2.0, options_.horizon_steps * 4.0));
}

ReplacementDecider::Candidate ReplacementDecider::Score(ActionKind kind, std::string reason,
                                                        std::vector<ExpertId> row,
                                                        std::span<const ExpertId> current_row,
                                                        const LayerStats& forecast,
                                                        double base_ms) const {
  Candidate c;
  c.kind = kind;
  c.reason = std::move(reason);
  if (options_.max_replicas_per_expert > 0) {
    // Over the operator's cap: never acceptable, so not worth a cost-model evaluation.
    std::vector<int> copies(forecast.num_experts(), 0);
    for (ExpertId e : row) {
      if (e != kEmptySlot && ++copies[e] > options_.max_replicas_per_expert) {
        c.step_ms = base_ms;
        c.net_ms = -std::numeric_limits<double>::infinity();
        c.state.row = std::move(row);
        return c;
      }
    }
  }
  c.state.routing = LocalityRouting(row, forecast.load, topology_);
  c.step_ms = EvaluateLayer(forecast, c.state.routing, topology_, params_).layer_ms;
  MigrationLoad load(topology_);
  load.Add(current_row, row, options_.expert_bytes);
  c.bytes = load.bytes;
  c.migration_ms = load.TransferMs();
  c.state.row = std::move(row);
  const double fixed = c.bytes > 0 ? options_.fixed_cost_ms : 0.0;
  c.net_ms = (base_ms - c.step_ms) * horizon_ - c.migration_ms - fixed;
  return c;
}

bool ReplacementDecider::Acceptable(const Candidate& c, double base_ms,
                                    double min_relative_gain) const {
  const double gain = (base_ms - c.step_ms) * horizon_;
  const double cost = c.migration_ms + (c.bytes > 0 ? options_.fixed_cost_ms : 0.0);
  return c.net_ms > options_.min_net_gain_ms && gain >= options_.gain_to_cost_ratio * cost &&
         base_ms - c.step_ms >= min_relative_gain * base_ms && c.bytes <= options_.byte_budget;
}

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
  options.evaluations_per_round = options_.minimal_replan_evaluations;
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
  const std::vector<IncrementalStep> steps =
      IncrementalReplan(current.row, target, forecast, topology_, params_, options);
  if (steps.empty()) return;
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
    out->push_back(
        Score(ActionKind::kMinimalReplan,
              std::to_string(i + 1) + " move(s) from the current placement (" + moves + ")",
              steps[i].row, current.row, forecast, base_ms));
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
  // Existing spare copies that are still wanted stay where they are.
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
  // New copies, hottest per replica first, onto the least loaded GPU that lacks one.
  std::vector<double> rank_load(t.ranks(), 0.0);
  for (SlotId s = 0; s < static_cast<SlotId>(next.size()); ++s) {
    if (next[s] != kEmptySlot) rank_load[t.RankOfSlot(s)] += forecast.load[next[s]] / want[next[s]];
  }
  std::vector<ExpertId> order(experts);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](ExpertId a, ExpertId b) {
    return forecast.load[a] / want[a] > forecast.load[b] / want[b];
  });
  for (ExpertId e : order) {
    while (have[e] < want[e]) {
      std::vector<char> node_has(t.nodes, 0), gpu_has(t.ranks(), 0);
      for (SlotId s = 0; s < static_cast<SlotId>(next.size()); ++s) {
        if (next[s] == e) {
          node_has[t.NodeOfSlot(s)] = 1;
          gpu_has[t.RankOfSlot(s)] = 1;
        }
      }
      SlotId best = -1;
      auto better = [&](SlotId a, SlotId b) {
        const RankId ra = t.RankOfSlot(a), rb = t.RankOfSlot(b);
        if (node_has[t.NodeOfRank(ra)] != node_has[t.NodeOfRank(rb)])
          return !node_has[t.NodeOfRank(ra)];
        return rank_load[ra] < rank_load[rb];
      };
      for (SlotId s = 0; s < static_cast<SlotId>(next.size()); ++s) {
        if (next[s] != kEmptySlot || gpu_has[t.RankOfSlot(s)]) continue;
        if (best < 0 || better(s, best)) best = s;
      }
      if (best < 0) break;
      next[best] = e;
      rank_load[t.RankOfSlot(best)] += forecast.load[e] / want[e];
      ++have[e];
    }
  }
  return next;
}

bool ReplacementDecider::StillQuiet(int layer, std::span<const ExpertId> row,
                                    const LayerStats& forecast, double min_gain) const {
  const std::optional<QuietLayer>& q = quiet_[layer];
  const DecisionOptions& o = options_;
  if (!q || o.rescore_forecast_shift <= 0 || q->horizon != horizon_ ||
      min_gain < q->min_gain * (1 - o.rescore_forecast_shift) ||
      q->load.size() != forecast.load.size() || !std::ranges::equal(q->row, row) ||
      q->options.min_net_gain_ms != o.min_net_gain_ms ||
      q->options.gain_to_cost_ratio != o.gain_to_cost_ratio ||
      q->options.min_relative_gain != o.min_relative_gain ||
      q->options.byte_budget != o.byte_budget || q->options.fixed_cost_ms != o.fixed_cost_ms) {
    return false;
  }
  double moved = 0, total = 0;
  for (size_t e = 0; e < forecast.load.size(); ++e) {
    moved += std::abs(forecast.load[e] - q->load[e]);
    total += q->load[e];
  }
  return moved <= o.rescore_forecast_shift * total;
}

std::vector<const ReplacementDecider::Candidate*> ReplacementDecider::AllocateBudget(
    const std::vector<LayerChoice>& choices, double unit_bytes) const {
  // Each layer's ladder: from no change, the acceptable changes on the upper hull of
  // (bytes, net benefit), so that every rung adds less net benefit per byte than the one before.
  struct Rung {
    size_t choice;
    int level;  // 1-based rung of its ladder
    const Candidate* candidate;
    double bytes = 0;  // added over the rung below
    double density = 0;
  };
  std::vector<Rung> rungs;
  for (size_t i = 0; i < choices.size(); ++i) {
    std::vector<const Candidate*> by_bytes;
    for (const Candidate& c : choices[i].acceptable) by_bytes.push_back(&c);
    std::stable_sort(by_bytes.begin(), by_bytes.end(), [](const Candidate* a, const Candidate* b) {
      return a->bytes != b->bytes ? a->bytes < b->bytes : a->net_ms > b->net_ms;
    });
    std::vector<const Candidate*> hull;
    auto slope = [&](double from_bytes, double from_net, const Candidate* to) {
      return (to->net_ms - from_net) /
             std::max(static_cast<double>(to->bytes) - from_bytes, unit_bytes);
    };
    for (const Candidate* c : by_bytes) {
      if (!hull.empty() && c->net_ms <= hull.back()->net_ms) continue;
      // Drop rungs that a later, larger change overtakes per byte.
      while (!hull.empty()) {
        const double lower_bytes = hull.size() > 1 ? hull[hull.size() - 2]->bytes : 0.0;
        const double lower_net = hull.size() > 1 ? hull[hull.size() - 2]->net_ms : 0.0;
        if (slope(lower_bytes, lower_net, c) < slope(lower_bytes, lower_net, hull.back())) break;
        hull.pop_back();
      }
      hull.push_back(c);
    }
    double bytes = 0, net = 0;
    for (size_t k = 0; k < hull.size(); ++k) {
      rungs.push_back({i, static_cast<int>(k + 1), hull[k], hull[k]->bytes - bytes,
                       slope(bytes, net, hull[k])});
      bytes = static_cast<double>(hull[k]->bytes);
      net = hull[k]->net_ms;
    }
  }
  std::stable_sort(rungs.begin(), rungs.end(),
                   [](const Rung& a, const Rung& b) { return a.density > b.density; });
  std::vector<const Candidate*> picks(choices.size(), nullptr);
  std::vector<int> level(choices.size(), 0);
  double used = 0;
  const double budget = static_cast<double>(options_.byte_budget);
  for (const Rung& r : rungs) {
    if (level[r.choice] != r.level - 1 || used + r.bytes > budget) continue;
    used += r.bytes;
    level[r.choice] = r.level;
    picks[r.choice] = r.candidate;
  }
  // The ladders skip changes under their hull: with the budget left, each layer in turn moves
  // up to its highest-net change that still fits.
  for (size_t i = 0; i < choices.size(); ++i) {
    const double held = picks[i] != nullptr ? static_cast<double>(picks[i]->bytes) : 0.0;
    for (const Candidate& a : choices[i].acceptable) {
      if (picks[i] != nullptr && a.net_ms <= picks[i]->net_ms) break;
      if (used - held + static_cast<double>(a.bytes) <= budget) {
        used += static_cast<double>(a.bytes) - held;
        picks[i] = &a;
        break;
      }
    }
  }
  return picks;
}

Decision ReplacementDecider::Decide(int64_t step, std::span<const LayerState> current,
                                    std::span<const LayerStats> forecast,
                                    std::span<const double> relative_uncertainty,
                                    std::span<const LayerStats> validation) {
  const int layers = static_cast<int>(current.size());
  if (cooldown_until_.size() != current.size()) cooldown_until_.assign(layers, 0);
  if (options_.byte_budget == 0 && !forecast.empty()) {
    options_.byte_budget = static_cast<uint64_t>(forecast[0].num_experts()) * options_.expert_bytes;
  }
  std::vector<LayerChoice> choices;
  if (quiet_.size() != current.size()) quiet_.assign(layers, std::nullopt);
  for (int l = 0; l < layers; ++l) {
    const LayerStats& f = forecast[l];
    if (step < cooldown_until_[l] || f.total_load() <= 0) continue;
    double min_gain = options_.min_relative_gain;
    if (l < static_cast<int>(relative_uncertainty.size())) {
      min_gain = std::max(min_gain, options_.uncertainty_z * relative_uncertainty[l]);
    }
    if (StillQuiet(l, current[l].row, f, min_gain)) continue;
    quiet_[l] = QuietLayer{current[l].row, f.load, horizon_, min_gain, options_};
    const LayerCost base_cost = EvaluateLayer(f, current[l].routing, topology_, params_);
    const double base_ms = base_cost.layer_ms;

    std::vector<Candidate> candidates;
    candidates.push_back(Score(ActionKind::kReweight, "routing weights for the forecast loads",
                               current[l].row, current[l].row, f, base_ms));
    CheapCandidates(current[l], f, base_ms, base_cost, &candidates);
    LayerChoice choice{l, base_ms, {}, false, {}, {}};
    if (options_.allow_regroup && planner_ != nullptr) {
      StatusOr<LayerPlan> plan = planner_->PlanLayer(f, topology_, params_);
      if (plan.ok()) {
        std::vector<ExpertId> row = AlignRowToCurrent(current[l].row, plan->row, topology_);
        choice.regroup = Score(ActionKind::kRegroupLayer,
                               planner_->name() + " re-plans the layer on the forecast",
                               std::move(row), current[l].row, f, base_ms);
        choice.has_regroup = true;
        candidates.push_back(choice.regroup);
      }
    }
    if (options_.allow_minimal_replan) {
      MinimalReplans(current[l], f, base_ms, min_gain,
                     choice.has_regroup ? std::span<const ExpertId>(choice.regroup.state.row)
                                        : std::span<const ExpertId>(),
                     &candidates);
    }
    const bool validate = l < static_cast<int>(validation.size()) &&
                          validation[l].total_load() > 0 &&
                          validation[l].num_experts() == f.num_experts();
    const double base_validation_ms =
        validate ? EvaluateLayer(validation[l], current[l].routing, topology_, params_).layer_ms
                 : 0.0;
    const Candidate* best = nullptr;
    for (Candidate& c : candidates) {
      if (!Acceptable(c, base_ms, min_gain)) continue;
      if (validate && c.bytes > 0) {
        const double validated_gain =
            base_validation_ms -
            EvaluateLayer(validation[l], c.state.routing, topology_, params_).layer_ms;
        if (validated_gain < base_ms - c.step_ms) {
          c.net_ms += (validated_gain - (base_ms - c.step_ms)) * horizon_;
          c.step_ms = base_ms - validated_gain;
          if (!Acceptable(c, base_ms, min_gain)) continue;
        }
      }
      if (best == nullptr || c.net_ms > best->net_ms) best = &c;
      choice.acceptable.push_back(c);
    }
    if (best == nullptr) continue;
    quiet_[l].reset();
    choice.best = *best;
    std::stable_sort(choice.acceptable.begin(), choice.acceptable.end(),
                     [](const Candidate& a, const Candidate& b) { return a.net_ms > b.net_ms; });
    choices.push_back(std::move(choice));
  }

  // The byte budget is a knapsack with one choice per layer. Each layer's acceptable changes on
  // their upper hull of (bytes, net benefit) form a ladder of upgrades, each with its own net
  // benefit per byte; upgrades of every layer are taken best per byte first while they fit. With
  // budget to spare every layer ends at its highest-net change; when it is short, after a load
  // shift of many layers at once, many layers take their first few moves this interval rather
  // than a few taking whole regroups and the rest waiting for the next.
  const double unit_bytes = static_cast<double>(std::max<uint64_t>(1, options_.expert_bytes));
  auto density = [&](const LayerChoice& c) {
    return c.best.net_ms / std::max(static_cast<double>(c.best.bytes), unit_bytes);
  };
  std::stable_sort(choices.begin(), choices.end(), [&](const LayerChoice& a, const LayerChoice& b) {
    return density(a) > density(b);
  });
  std::vector<const Candidate*> picks = AllocateBudget(choices, unit_bytes);
  Decision decision;
  MigrationLoad load(topology_);
  for (size_t i = 0; i < choices.size(); ++i) {
    const LayerChoice& c = choices[i];
    const Candidate* pick = picks[i];
    if (pick == nullptr) continue;
    decision.bytes += pick->bytes;
    load.Add(current[c.layer].row, pick->state.row, options_.expert_bytes);
    DecisionRecord record;
    record.step = step;
    record.layer_index = c.layer;
    record.kind = pick->kind;
    record.reason = pick->reason;
    record.predicted_step_ms_before = c.base_ms;
    record.predicted_step_ms_after = pick->step_ms;
    record.predicted_gain_ms = (c.base_ms - pick->step_ms) * horizon_;
    record.migration_ms = pick->migration_ms + (pick->bytes > 0 ? options_.fixed_cost_ms : 0);
    record.bytes = pick->bytes;
    decision.records.push_back(std::move(record));
    decision.changed_layers.push_back(c.layer);
    decision.new_states.push_back(pick->state);
  }

  // Re-plan all: every layer's regroup at once, when that beats the piecewise choice.
  if (options_.allow_regroup && layers > 1) {
    double all_gain = 0;
    MigrationLoad all(topology_);
    bool complete = true;
    for (int l = 0; l < layers && complete; ++l) {
      auto it = std::find_if(choices.begin(), choices.end(),
                             [&](const LayerChoice& c) { return c.layer == l; });
      if (it == choices.end() || !it->has_regroup) {
        complete = false;
        break;
      }
      all_gain += (it->base_ms - it->regroup.step_ms) * horizon_;
      all.Add(current[l].row, it->regroup.state.row, options_.expert_bytes);
    }
    const double all_cost = all.TransferMs() + options_.fixed_cost_ms;
    double piecewise_net = 0;
    for (const DecisionRecord& r : decision.records) piecewise_net += r.predicted_gain_ms;
    piecewise_net -= decision.bytes > 0 ? load.TransferMs() + options_.fixed_cost_ms : 0;
    if (complete && all.bytes <= options_.byte_budget &&
        all_gain - all_cost > piecewise_net + options_.min_net_gain_ms &&
        all_gain >= options_.gain_to_cost_ratio * all_cost) {
      Decision replan;
      DecisionRecord record;
      record.step = step;
      record.layer_index = -1;
      record.kind = ActionKind::kReplanAll;
      record.reason = "every layer's forecast favours a re-plan";
      for (const LayerChoice& c : choices) {
        record.predicted_step_ms_before += c.base_ms;
        record.predicted_step_ms_after += c.regroup.step_ms;
        replan.changed_layers.push_back(c.layer);
        replan.new_states.push_back(c.regroup.state);
      }
      record.predicted_gain_ms = all_gain;
      record.migration_ms = all_cost;
      record.bytes = all.bytes;
      replan.bytes = all.bytes;
      replan.records.push_back(std::move(record));
      replan.migration_ms = all_cost;
      for (int l : replan.changed_layers) cooldown_until_[l] = step + options_.cooldown_steps;
      return replan;
    }
  }

  decision.migration_ms = load.TransferMs() + (decision.bytes > 0 ? options_.fixed_cost_ms : 0.0);
  // Only changes that move weights start a cool-down; new routing weights are free to follow.
  for (const DecisionRecord& r : decision.records) {
    if (r.bytes > 0) cooldown_until_[r.layer_index] = step + options_.cooldown_steps;
  }
  return decision;
}

}  // namespace grace
