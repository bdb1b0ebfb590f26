// OnlineController: grace's online re-placement loop for one model, fed one control interval at
// a time (DESIGN.md, "online re-placement").
//
// Each interval the caller hands it the observed load per step of every (layer, expert), and
// optionally co-activation pairs or recent tokens. The controller
//   1. scores the forecast made last interval against the observation (weighted MAPE, for the
//      forecaster and for the last-value forecast),
//   2. updates the load forecaster (policy/forecast.h) and the decayed co-activation counts
//      (policy/forecast_coactivation.h),
//   3. runs the load-shift detector (policy/change_detector.h): a layer that shifted restarts
//      its forecasts and co-activation, and the decider learns the regime length,
// and on Decide builds the horizon forecast as LayerStats (loads, affinity and recent tokens
// where known; for pair sources, tokens drawn from the co-activation, policy/affinity_sampling.h)
// with each layer's forecast uncertainty and, as an independent check of each change's gain, the
// mean load of the latest intervals of the layer's regime, and asks ReplacementDecider
// (policy/decision.h) what to change. graced and the online simulator both run this loop.
//
//   OnlineController controller(topology, params, layer_ids, experts, top_k, {}, &planner);
//   every interval: controller.Observe(load_per_step);
//                   Decision d = controller.Decide(step, current_states);
//
// Thread contract: not thread-safe; owned and driven by one control thread. Pure computation.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/ids.h"
#include "core/topology.h"
#include "policy/affinity_sampling.h"
#include "policy/change_detector.h"
#include "policy/cost_model.h"
#include "policy/decision.h"
#include "policy/forecast.h"
#include "policy/forecast_coactivation.h"
#include "policy/layer_stats.h"
#include "policy/placement_policy.h"

namespace grace {

struct OnlineControllerOptions {
  DecisionOptions decision;
  ForecastOptions forecast;
  ChangeDetectorOptions detector;
  int warmup_intervals = 4;         // intervals observed before the first decision
  double coactivation_decay = 0.9;  // per interval
  int recent_token_intervals = 2;   // token-level sources: intervals of tokens Decide sees
  // Pair sources: tokens drawn from the co-activation per layer for planning and costing
  // (policy/affinity_sampling.h); 0: DefaultAffinityTokens.
  int affinity_tokens = 0;
  // Intervals (since the layer's last load shift) whose mean load validates a change's gain
  // (ReplacementDecider::Decide's `validation`); 0: no validation.
  int validation_intervals = 4;
};

// Co-activations of two experts of one layer (layer_index: position in layer_ids) seen in one
// interval, from sources that count pairs rather than report tokens.
struct CoactivationPair {
  int layer_index = 0;
  ExpertId a = 0, b = 0;
  double count = 0;
};

class OnlineController {
 public:
  // `planner` re-plans layers for "regroup" (may be null); it must outlive the controller.
  OnlineController(const Topology& topology, const CostParams& params,
                   std::vector<LayerId> layer_ids, int num_experts, int top_k,
                   OnlineControllerOptions options, const PlacementPolicy* planner);

  int num_layers() const { return static_cast<int>(layer_ids_.size()); }
  int num_experts() const { return num_experts_; }

  // One interval's observed load per step, layer-major [layer][expert] (num_layers() x
  // num_experts() values); optional co-activation pairs and, for token-level sources, each
  // layer's recent tokens (num_layers() entries). `step` is the serving step the interval ends
  // at (regime lengths are measured in steps); -1: the interval count.
  void Observe(std::span<const double> load_per_step, std::span<const CoactivationPair> pairs = {},
               const std::vector<LayerTokens>* tokens = nullptr, int64_t step = -1);

  // The decision for `current` (one LayerState per layer) at `step`; empty before warm-up.
  Decision Decide(int64_t step, std::span<const LayerState> current);

  // The horizon forecast as LayerStats: what the last Decide used, or, when intervals were
  // observed since, what the next one would use. For metrics and the UI.
  std::vector<LayerStats> ForecastStats() const;

  // Weighted MAPE of the one-step-ahead forecasts so far: sum |forecast - load| / sum load.
  double forecast_wmape() const { return load_sum_ > 0 ? error_forecast_ / load_sum_ : 0.0; }
  double last_value_wmape() const { return load_sum_ > 0 ? error_last_ / load_sum_ : 0.0; }
  int64_t intervals() const { return forecaster_.intervals(); }
  int horizon_steps() const { return decider_.horizon_steps(); }
  int64_t detector_alarms() const { return detector_.alarms(); }
  // Layers (indices) whose load shifted in the latest interval.
  const std::vector<int>& last_shifted_layers() const { return shifted_; }
  const LoadForecaster& forecaster() const { return forecaster_; }

  // Live policy changes from the REST API; cool-downs and the regime history are kept.
  void SetDecisionOptions(const DecisionOptions& options) { decider_.SetOptions(options); }
  const DecisionOptions& decision_options() const { return decider_.options(); }

 private:
  std::vector<LayerStats> BuildForecast(int horizon, std::vector<double>* uncertainty) const;
  std::vector<LayerStats> BuildValidation() const;
  AffinityMatrix AffinityOf(int layer) const;  // the decayed co-activation of a layer
  AffinitySamplingOptions SamplingFor(int layer) const;
  // Whether co-activation goes into the forecasts: not where the decider would plan the layers
  // from loads anyway (DecisionOptions::max_token_plan_work), as drawing their tokens was then
  // half of graced's CPU at 1,000 GPUs; the candidates are then scored on loads too.
  bool AffordsTokenPlanning() const;

  std::vector<LayerId> layer_ids_;
  int num_experts_;
  int top_k_;
  int ranks_;
  OnlineControllerOptions options_;
  LoadForecaster forecaster_;
  LoadShiftDetector detector_;
  DecayedCoactivation coactivation_;
  ReplacementDecider decider_;
  bool has_coactivation_ = false;
  std::deque<std::vector<LayerTokens>> recent_tokens_;  // newest last
  std::deque<Eigen::ArrayXd> recent_loads_;             // newest last
  std::vector<int> intervals_since_shift_;              // per layer
  std::vector<int> shifted_;
  double error_forecast_ = 0, error_last_ = 0, load_sum_ = 0;
  Eigen::ArrayXd observed_;
  std::vector<LayerStats> last_forecast_;
  int64_t last_forecast_intervals_ = -1;  // intervals() when last_forecast_ was built
};

}  // namespace grace
