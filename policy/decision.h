// ReplacementDecider: decides, each control interval, whether and how to change the expert
// placement, from the current placement and the load forecast (DESIGN.md, "online
// re-placement").
//
// For every layer it builds candidate actions from cheap to expensive:
//   reweight      new routing weights for the forecast loads; no weights move (0 bytes)
//   add replica   the expert with the highest forecast load per replica gets a copy on the least
//                 loaded GPU without one, in an empty slot or in place of the least useful spare
//                 replica there
//                 (and "re-replicate": all spare slots re-assigned to the forecast's hot
//                 experts, primaries kept, each new copy on a node without one, a single-copy
//                 expert making room when needed; optionally followed by swaps)
//   drop replica  the least useful spare replica is removed (0 bytes; frees a slot)
//   swap experts  experts of the most loaded GPU trade places with lighter ones elsewhere, one
//                 swap at a time on a load proxy; sequences of 1, 2, 4, ... swaps are candidates
//   regroup layer the placement policy re-plans the layer on the forecast, from scratch and
//                 kept near the current placement (PlacementPolicy::PlanLayerNear: most of the
//                 gain for fewer copies when many packings balance about as well)
//   minimal re-plan  a minimum-move re-plan from the current row (policy/incremental_replan.h):
//                 one swap or replica at a time, toward the regrouped row and off the hottest
//                 GPU, each chosen by modeled gain per expert copied, until a move no longer
//                 pays its transfer; the prefixes of that sequence are candidates, and so is
//                 the regrouped row with the changes that do not pay undone
// and, over all layers, "re-plan all". Each candidate is scored with the cost model on the
// forecast: predicted gain = (modeled layer time now - with the candidate) x horizon steps;
// migration cost = the time to copy the weights over the links (each copy from the nearest GPU
// holding the expert: NVLink within a node, the NIC across nodes) plus a fixed cost per
// migration, paid once per interval however many layers move: a change that pays only without
// it is adopted when another layer's change migrates in the same interval. A layer's best
// candidate is adopted only if its net benefit clears
// min_net_gain_ms, its gain beats gain_to_cost_ratio x its migration cost, its gain is at least
// min_relative_gain of the layer's time, and the layer is out of its cool-down. Adopted changes
// never exceed the byte budget of the interval, shared out as a knapsack with one choice per
// layer: each layer's acceptable changes on the upper hull of (bytes, net benefit) are a ladder of
// upgrades, taken across layers by net benefit per byte while they fit, then each layer moves up
// to its highest-net change the rest of the budget allows. With budget to spare every layer takes
// its highest-net change; when it is short, many drifted layers take their first moves at once.
// Copies run in parallel on the links, so an interval's transfer takes its busiest port's time:
// a layer left alone whose change does not pay for its own copies is then adopted when it pays
// for the time it adds to the interval's transfer (copies onto ports the others leave idle).
// Every adopted change is recorded with its reason, predicted gain and bytes, so the realised gain
// can be compared later.
//
// Thread contract: not thread-safe; one control thread. Pure computation.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/ids.h"
#include "core/topology.h"
#include "policy/cost_model.h"
#include "policy/layer_stats.h"
#include "policy/placement_policy.h"

namespace grace {

enum class ActionKind : uint8_t {
  kReweight,
  kAddReplica,
  kDropReplica,
  kSwapExperts,
  kRegroupLayer,
  kReplanAll,
  kMinimalReplan,
};
const char* ActionKindName(ActionKind kind);

struct DecisionOptions {
  int horizon_steps = 64;           // steps a change is expected to pay off over, until
                                    // regime changes have been seen (ObserveRegimeChange)
  bool adapt_horizon = true;        // then: the expected rest of the current regime, from the
                                    // lengths seen, in [1/2, 4] x the above
  double min_net_gain_ms = 1.0;     // net benefit a change must clear
  double gain_to_cost_ratio = 1.5;  // margin for forecast error: gain >= ratio x migration
  double min_relative_gain = 0.01;  // of the layer's predicted time per step
  double uncertainty_z = 1.0;       // ... and at least this many forecast standard errors
  int cooldown_steps = 8;           // a changed layer is left alone this long
  uint64_t byte_budget = 0;         // per interval; 0: an eighth of all layers' experts, at
                                    // least one layer's (E x expert_bytes x max(1, layers / 8))
  uint64_t expert_bytes = 0;        // weights of one expert; 0: from CostParams (bf16)
  double fixed_cost_ms = 1.0;       // per migration (prepare, commit, table switch)
  int candidates_per_kind = 3;      // experts tried for each cheap action
  int max_swaps = 32;               // longest swap sequence tried per layer and interval
  bool allow_regroup = true;
  bool allow_minimal_replan = true;
  int minimal_replan_moves = 32;  // longest move sequence tried per layer and interval
  // Exact cost-model evaluations per move chosen; 0: a third of the layer's experts, at least 32.
  // The moves to choose from grow with the experts (the swaps off the hottest GPU alone are its
  // slots times the layer's), and a fixed budget sees ever less of them. On DeepSeek-V3 (256
  // experts, scenario deepseek_v3_prefill_fast) 32 / 64 / 85 / 96 evaluations capture 0.59 /
  // 0.60 / 0.61 / 0.62 of the oracle's gain, in 1 / 2.1 / 2.9 / 3.8 x the time.
  int minimal_replan_evaluations = 0;
  // A layer found with no acceptable change is not scored again while its row, the horizon and
  // the thresholds stay put and its forecast moved less than this (relative L1 distance from the
  // forecast it was scored on): scoring every layer every interval is most of the daemon's CPU
  // at a thousand GPUs, and the verdict would not change. 0: score every layer every time.
  double rescore_forecast_shift = 0.02;
  int max_replicas_per_expert = 0;  // the operator's cap on one expert's copies; 0: none
  // A layer whose token-aware re-plan (tokens or co-activation in its forecast) would cost more
  // than this, in experts^2 x ranks (the token search's moves and their scoring), is re-planned
  // from its loads: at DeepSeek-V3's 256 experts on 32 GPUs one token-aware plan takes seconds,
  // on 1,000 GPUs minutes, so a daemon re-planning 58 layers could not keep its interval.
  // Qwen1.5-MoE (60 experts) on 8 GPUs is 28,800; OLMoE (64) on 16 is 65,536. 0: no limit.
  double max_token_plan_work = 1 << 18;
  // Threads that score layers at once (core/parallel.h); 0: the hardware's, at most 8. The
  // decision is the same for any count.
  int threads = 0;
};

// Bytes of one expert's weights: gate, up and down projections, hidden x ffn each, bf16.
uint64_t ExpertWeightBytes(const CostParams& params);

// One layer's current placement row and routing.
struct LayerState {
  std::vector<ExpertId> row;
  LayerRouting routing;
};

struct DecisionRecord {
  int64_t step = 0;
  int layer_index = -1;  // -1: every layer
  ActionKind kind = ActionKind::kReweight;
  std::string reason;
  double predicted_step_ms_before = 0;  // modeled time per step on the forecast, summed
  double predicted_step_ms_after = 0;   // over the layers the action touches
  double predicted_gain_ms = 0;         // (before - after) x horizon
  double migration_ms = 0;              // copies plus the fixed cost
  uint64_t bytes = 0;
  double realised_gain_ms = std::numeric_limits<double>::quiet_NaN();  // filled in by observers
};

struct Decision {
  std::vector<DecisionRecord> records;
  std::vector<int> changed_layers;  // same order as new_states
  std::vector<LayerState> new_states;
  uint64_t bytes = 0;
  double migration_ms = 0;  // of the whole interval's migration, fixed cost included
};

// Copies needed to go from `from` to `to` (rows of one layer): every slot that takes a new
// non-empty expert receives it from the nearest GPU that holds it in `from`.
struct MigrationLoad {
  explicit MigrationLoad(const Topology& topology);
  void Add(std::span<const ExpertId> from, std::span<const ExpertId> to, uint64_t expert_bytes);
  // Copy time: the busiest NIC (per node, inbound) and the busiest NVLink port (per rank,
  // inbound) run in parallel; the slower bounds the migration.
  double TransferMs() const;

  const Topology* topology;
  uint64_t bytes = 0;
  int copies = 0;
  std::vector<double> intra_in;  // per rank
  std::vector<double> inter_in;  // per node
};

// The placement `to`, relabelled to move as little as possible from `from`: its nodes, and the
// GPUs inside each node, are renumbered to overlap `from` most (the cost model is symmetric
// under both), then every expert that stays on a GPU keeps its slot.
std::vector<ExpertId> AlignRowToCurrent(std::span<const ExpertId> from,
                                        std::span<const ExpertId> to, const Topology& topology);

class ReplacementDecider {
 public:
  // `planner` re-plans layers for "regroup" (may be null: no regrouping); it must outlive this.
  ReplacementDecider(const Topology& topology, const CostParams& params, DecisionOptions options,
                     const PlacementPolicy* planner);

  const DecisionOptions& options() const { return options_; }
  // Replaces the options (a live policy change); cool-downs and the regime history are kept.
  void SetOptions(const DecisionOptions& options);

  // Tells the decider the workload changed regime at `step` (a load-shift alarm). From then on
  // the horizon a change must pay off over is what is expected to be left of the current
  // regime, from the lengths of the regimes seen: a workload that drifts often earns less from
  // each move, and a move late in a regime earns less than one early in it.
  void ObserveRegimeChange(int64_t step);
  int horizon_steps() const { return horizon_; }
  // Sets the horizon for a decision at `step` (Decide does it itself).
  void UpdateHorizon(int64_t step);

  // `current[l]` is layer l's placement now, `forecast[l]` its forecast stats (load: the mean
  // per step over the horizon; tokens, when present, a recent sample for the exact cost model).
  // `relative_uncertainty[l]`, when given, is the relative standard error of layer l's forecast:
  // a change must gain at least uncertainty_z times it, so that noise in the forecast is not
  // mistaken for a gain (the best of many noisy candidates always looks good).
  // `validation[l]`, when given, is a second estimate of layer l's load from other samples than
  // the forecast leans on (e.g. the mean of the latest intervals): a change that moves weights
  // is credited with the smaller of its gains on the two, so a candidate that only fits the
  // forecast's sampling noise (the winner's curse of picking the best of many) is not taken.
  Decision Decide(int64_t step, std::span<const LayerState> current,
                  std::span<const LayerStats> forecast,
                  std::span<const double> relative_uncertainty = {},
                  std::span<const LayerStats> validation = {});

 private:
  struct Candidate {
    ActionKind kind = ActionKind::kReweight;
    std::string reason;
    LayerState state;
    double step_ms = 0;
    double migration_ms = 0;  // copies only
    uint64_t bytes = 0;
    double net_ms = 0;
  };
  Candidate Score(ActionKind kind, std::string reason, std::vector<ExpertId> row,
                  std::span<const ExpertId> current_row, const LayerStats& forecast,
                  double base_ms) const;
  void CheapCandidates(const LayerState& current, const LayerStats& forecast, double base_ms,
                       const LayerCost& base_cost, std::vector<Candidate>* out) const;
  void SwapSequences(const std::vector<ExpertId>& start, std::span<const ExpertId> current_row,
                     const LayerStats& forecast, double base_ms, ActionKind kind,
                     const std::string& prefix, std::vector<Candidate>* out) const;
  void MinimalReplans(const LayerState& current, const LayerStats& forecast, double base_ms,
                      double min_relative_gain, std::span<const ExpertId> target,
                      std::vector<Candidate>* out) const;
  std::vector<ExpertId> Rereplicate(const std::vector<ExpertId>& row,
                                    const LayerStats& forecast) const;
  // Whether the candidate's gain over the horizon pays a migration taking `cost_ms`: its net
  // benefit clears min_net_gain_ms, its gain gain_to_cost_ratio x the cost, its gain per step
  // min_relative_gain of the layer's time, and it fits the byte budget.
  bool Pays(const Candidate& c, double base_ms, double min_relative_gain, double cost_ms) const;
  // Pays for its own copies; with fixed_paid, the interval migrates anyway: the fixed cost is not
  // the candidate's to pay.
  bool Acceptable(const Candidate& c, double base_ms, double min_relative_gain,
                  bool fixed_paid = false) const;

  // A layer with at least one acceptable change this interval.
  struct LayerChoice {
    int layer;
    double base_ms;
    double min_gain;  // the relative gain per step its changes must reach
    Candidate best;
    bool has_regroup = false;
    Candidate regroup;
    std::vector<Candidate> acceptable;  // highest net benefit first; best is the first
    // Changes that pay only when the interval migrates anyway (fixed cost already paid).
    std::vector<Candidate> if_migrating;
    // Changes that do not pay for their own transfer but would for a share of one: copies run
    // in parallel on the links (MigrationLoad::TransferMs is the busiest port's time), so when
    // other layers' copies already keep some ports busy, copies onto idle ones cost little more.
    std::vector<Candidate> sharing;
  };
  // The change each choice takes within the byte budget (null: none), by the upgrades with the
  // most net benefit per byte first; `unit_bytes` is the least a change is counted as moving.
  std::vector<const Candidate*> AllocateBudget(const std::vector<LayerChoice>& choices,
                                               double unit_bytes) const;
  // Adds to `decision` (whose copies are `load`) the sharing changes of the `idle` layers (those
  // it leaves alone) whose gain pays the transfer time they add to the interval's, most gain per
  // byte first, within the byte budget.
  void ShareTransfer(int64_t step, std::span<const LayerState> current,
                     std::span<const LayerChoice* const> idle, MigrationLoad* load,
                     Decision* decision) const;
  // Adds `change` of `choice`'s layer to `decision`, recorded with its predicted gain, the
  // migration time it is charged and `reason`.
  void Adopt(int64_t step, const LayerChoice& choice, const Candidate& change, double migration_ms,
             std::string reason, Decision* decision) const;

  // What a layer's last scoring that found no acceptable change saw.
  struct QuietLayer {
    std::vector<ExpertId> row;
    std::vector<double> load;
    int horizon = 0;
    double min_gain = 0;
    DecisionOptions options;
  };
  bool StillQuiet(int layer, std::span<const ExpertId> row, const LayerStats& forecast,
                  double min_gain) const;

  Topology topology_;
  CostParams params_;
  DecisionOptions options_;
  const PlacementPolicy* planner_;
  std::vector<int64_t> cooldown_until_;           // per layer
  std::vector<std::optional<QuietLayer>> quiet_;  // per layer
  int horizon_ = 1;
  int64_t regime_start_ = 0;
  std::deque<double> regime_lengths_;  // in steps, the latest kRegimesKept
};

}  // namespace grace
