#include "policy/decision.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/parallel.h"
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

// Regime lengths the horizon is estimated from (the latest ones).
constexpr size_t kRegimesKept = 16;

// Balance the near re-plan may give up to keep an expert in place (PlanLayerNear's slack): 3% of
// a GPU's even share, below the step-to-step noise of a GPU's load at serving batch sizes.
// Offering several slacks (1%, 3%, 10%) lost on the shipped scenarios: the best of more
// candidates on the forecast did worse on the loads that followed.
constexpr double kNearSlack = 0.03;

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
  UpdateHorizon(regime_start_);
}

void ReplacementDecider::ObserveRegimeChange(int64_t step) {
  // Alarms of several layers for one shift arrive within a few intervals: count them once.
  const int64_t length = step - regime_start_;
  if (length < std::max(4, options_.cooldown_steps)) return;
  regime_start_ = step;
  regime_lengths_.push_back(static_cast<double>(length));
  if (regime_lengths_.size() > kRegimesKept) regime_lengths_.pop_front();
  UpdateHorizon(step);
}

void ReplacementDecider::UpdateHorizon(int64_t step) {
  horizon_ = options_.horizon_steps;
  if (!options_.adapt_horizon || regime_lengths_.empty()) return;
  // What is left of the current regime: the mean of (length - elapsed) over the regimes seen
  // that outlasted it so far; half the mean length when none did.
  const double elapsed = static_cast<double>(step - regime_start_);
  double left = 0, mean = 0;
  int outlasted = 0;
  for (double length : regime_lengths_) {
    mean += length / static_cast<double>(regime_lengths_.size());
    if (length > elapsed) {
      left += length - elapsed;
      ++outlasted;
    }
  }
  left = outlasted > 0 ? left / outlasted : mean / 2;
  horizon_ = static_cast<int>(
      std::clamp(left, options_.horizon_steps / 2.0, options_.horizon_steps * 4.0));
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

bool ReplacementDecider::Pays(const Candidate& c, double base_ms, double min_relative_gain,
                              double cost_ms) const {
  const double gain = (base_ms - c.step_ms) * horizon_;
  return gain - cost_ms > options_.min_net_gain_ms &&
         gain >= options_.gain_to_cost_ratio * cost_ms &&
         base_ms - c.step_ms >= min_relative_gain * base_ms && c.bytes <= options_.byte_budget;
}

bool ReplacementDecider::Acceptable(const Candidate& c, double base_ms, double min_relative_gain,
                                    bool fixed_paid) const {
  const double fixed = c.bytes > 0 && !fixed_paid ? options_.fixed_cost_ms : 0.0;
  return Pays(c, base_ms, min_relative_gain, c.migration_ms + fixed);
}

bool ReplacementDecider::StillQuiet(int layer, std::span<const ExpertId> row,
                                    const LayerStats& forecast, double min_gain) const {
  const std::optional<QuietLayer>& q = quiet_[layer];
  const DecisionOptions& o = options_;
  // A shorter horizon only shrinks every gain: a layer quiet over a longer one stays quiet.
  if (!q || o.rescore_forecast_shift <= 0 || horizon_ > q->horizon ||
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

Decision ReplacementDecider::Decide(int64_t step, std::span<const LayerState> current,
                                    std::span<const LayerStats> forecast,
                                    std::span<const double> relative_uncertainty,
                                    std::span<const LayerStats> validation) {
  const int layers = static_cast<int>(current.size());
  UpdateHorizon(step);
  if (cooldown_until_.size() != current.size()) cooldown_until_.assign(layers, 0);
  if (options_.byte_budget == 0 && !forecast.empty()) {
    // An eighth of the model's expert weights, at least one layer's: a shift of every layer at
    // once is followed within about eight intervals, and a GPU stages incoming copies for about
    // an eighth of its expert memory at most.
    const uint64_t layer_bytes =
        static_cast<uint64_t>(forecast[0].num_experts()) * options_.expert_bytes;
    options_.byte_budget = std::max(layer_bytes, layer_bytes * layers / 8);
  }
  std::vector<LayerChoice> choices;
  if (quiet_.size() != current.size()) quiet_.assign(layers, std::nullopt);
  // Each layer is scored on its own (its cool-down, quiet record and candidates), in parallel;
  // the choices are then taken in layer order, so the decision does not depend on threads.
  std::vector<std::optional<LayerChoice>> per_layer(layers);
  ParallelFor(layers, options_.threads, [&](int l) {
    const LayerStats& f = forecast[l];
    if (step < cooldown_until_[l] || f.total_load() <= 0) return;
    double min_gain = options_.min_relative_gain;
    if (l < static_cast<int>(relative_uncertainty.size())) {
      min_gain = std::max(min_gain, options_.uncertainty_z * relative_uncertainty[l]);
    }
    if (StillQuiet(l, current[l].row, f, min_gain)) return;
    quiet_[l] = QuietLayer{current[l].row, f.load, horizon_, min_gain, options_};
    const LayerCost base_cost = EvaluateLayer(f, current[l].routing, topology_, params_);
    const double base_ms = base_cost.layer_ms;

    std::vector<Candidate> candidates;
    candidates.push_back(Score(ActionKind::kReweight, "routing weights for the forecast loads",
                               current[l].row, current[l].row, f, base_ms));
    CheapCandidates(current[l], f, base_ms, base_cost, &candidates);
    LayerChoice choice{l, base_ms, min_gain, {}, false, {}, {}, {}, {}};
    if (options_.allow_regroup && planner_ != nullptr) {
      // Over the work limit the re-plan sees the forecast's loads alone; the candidates are still
      // scored on everything the forecast has.
      const double work =
          static_cast<double>(f.num_experts()) * f.num_experts() * topology_.ranks();
      const bool loads_only = (f.tokens || f.affinity) && options_.max_token_plan_work > 0 &&
                              work > options_.max_token_plan_work;
      LayerStats plan_input;
      if (loads_only) {
        plan_input.layer_id = f.layer_id;
        plan_input.top_k = f.top_k;
        plan_input.load = f.load;
      }
      StatusOr<LayerPlan> plan =
          planner_->PlanLayer(loads_only ? plan_input : f, topology_, params_);
      if (plan.ok()) {
        std::vector<ExpertId> row = AlignRowToCurrent(current[l].row, plan->row, topology_);
        choice.regroup = Score(ActionKind::kRegroupLayer,
                               planner_->name() + " re-plans the layer on the forecast" +
                                   (loads_only ? " loads (co-activation over the work limit)" : ""),
                               std::move(row), current[l].row, f, base_ms);
        choice.has_regroup = true;
        candidates.push_back(choice.regroup);
      }
      // The same re-plan kept near the current placement: most of the gain for fewer copies
      // when many packings balance about as well.
      StatusOr<LayerPlan> near = planner_->PlanLayerNear(loads_only ? plan_input : f, topology_,
                                                         params_, current[l].row, kNearSlack);
      if (near.ok()) {
        std::vector<ExpertId> row = AlignRowToCurrent(current[l].row, near->row, topology_);
        if (!choice.has_regroup || row != choice.regroup.state.row) {
          candidates.push_back(Score(ActionKind::kRegroupLayer,
                                     planner_->name() + " re-plans the layer near its placement",
                                     std::move(row), current[l].row, f, base_ms));
        }
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
    // Credits a change that moves weights with the smaller of its gains on the forecast and on
    // the validation loads.
    auto validated = [&](Candidate& c) {
      if (!validate || c.bytes == 0) return;
      const double validated_gain =
          base_validation_ms -
          EvaluateLayer(validation[l], c.state.routing, topology_, params_).layer_ms;
      if (validated_gain < base_ms - c.step_ms) {
        c.net_ms += (validated_gain - (base_ms - c.step_ms)) * horizon_;
        c.step_ms = base_ms - validated_gain;
      }
    };
    // The changes that would pay only for a share of the interval's transfer: the one with the
    // most gain per byte, and the one with the most gain.
    const Candidate* densest = nullptr;
    const Candidate* largest = nullptr;
    for (Candidate& c : candidates) {
      if (!Acceptable(c, base_ms, min_gain, /*fixed_paid=*/true)) {
        if (c.bytes > 0 && Pays(c, base_ms, min_gain, /*cost_ms=*/0.0)) {
          auto per_byte = [&](const Candidate* x) {
            return (base_ms - x->step_ms) / static_cast<double>(x->bytes);
          };
          if (densest == nullptr || per_byte(&c) > per_byte(densest)) densest = &c;
          if (largest == nullptr || c.step_ms < largest->step_ms) largest = &c;
        }
        continue;
      }
      validated(c);
      if (!Acceptable(c, base_ms, min_gain, /*fixed_paid=*/true)) continue;
      if (Acceptable(c, base_ms, min_gain)) {
        choice.acceptable.push_back(c);
      } else {
        choice.if_migrating.push_back(c);
      }
    }
    for (const Candidate* c : {densest, largest}) {
      if (c == nullptr || (c == largest && largest == densest)) continue;
      Candidate shared = *c;
      validated(shared);
      if (Pays(shared, base_ms, min_gain, /*cost_ms=*/0.0)) choice.sharing.push_back(shared);
    }
    if (choice.acceptable.empty() && choice.if_migrating.empty() && choice.sharing.empty()) {
      return;
    }
    quiet_[l].reset();
    per_layer[l] = std::move(choice);
  });
  for (std::optional<LayerChoice>& c : per_layer) {
    if (c) choices.push_back(std::move(*c));
  }

  // The fixed cost is paid once per interval: when some layer's change copies weights, the
  // changes that pay only without it are acceptable too, and no copying change pays it alone.
  const bool migrating = std::ranges::any_of(choices, [](const LayerChoice& c) {
    return std::ranges::any_of(c.acceptable, [](const Candidate& a) { return a.bytes > 0; });
  });
  for (LayerChoice& c : choices) {
    if (migrating) {
      for (Candidate& a : c.if_migrating) c.acceptable.push_back(std::move(a));
      for (Candidate& a : c.acceptable) {
        if (a.bytes > 0) a.net_ms += options_.fixed_cost_ms;
      }
    }
    c.if_migrating.clear();
    std::stable_sort(c.acceptable.begin(), c.acceptable.end(),
                     [](const Candidate& a, const Candidate& b) { return a.net_ms > b.net_ms; });
    if (!c.acceptable.empty()) c.best = c.acceptable.front();
  }
  // Layers with only sharing changes wait for the fill after the budget is shared out.
  std::vector<LayerChoice> sharing_only;
  for (LayerChoice& c : choices) {
    if (c.acceptable.empty()) sharing_only.push_back(std::move(c));
  }
  std::erase_if(choices, [](const LayerChoice& c) { return c.acceptable.empty(); });

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
    load.Add(current[c.layer].row, pick->state.row, options_.expert_bytes);
    Adopt(step, c, *pick, pick->migration_ms + (pick->bytes > 0 ? options_.fixed_cost_ms : 0),
          pick->reason, &decision);
  }
  if (decision.bytes > 0) {
    std::vector<const LayerChoice*> idle;
    for (const LayerChoice& c : sharing_only) idle.push_back(&c);
    for (size_t i = 0; i < choices.size(); ++i) {
      if (picks[i] == nullptr) idle.push_back(&choices[i]);
    }
    ShareTransfer(step, current, idle, &load, &decision);
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
