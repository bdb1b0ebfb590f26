#include "policy/online_controller.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <utility>

namespace grace {

OnlineController::OnlineController(const Topology& topology, const CostParams& params,
                                   std::vector<LayerId> layer_ids, int num_experts, int top_k,
                                   OnlineControllerOptions options, const PlacementPolicy* planner)
    : layer_ids_(std::move(layer_ids)),
      num_experts_(num_experts),
      top_k_(top_k),
      ranks_(topology.ranks()),
      options_(options),
      forecaster_(static_cast<int>(layer_ids_.size()) * num_experts, options.forecast),
      detector_(static_cast<int>(layer_ids_.size()), num_experts, options.detector),
      coactivation_(static_cast<int>(layer_ids_.size()), num_experts, options.coactivation_decay),
      decider_(topology, params, options.decision, planner),
      intervals_since_shift_(layer_ids_.size(), 0) {}

void OnlineController::Observe(std::span<const double> load_per_step,
                               std::span<const CoactivationPair> pairs,
                               const std::vector<LayerTokens>* tokens, int64_t step) {
  const int layers = num_layers();
  const int experts = num_experts_;
  assert(load_per_step.size() == static_cast<size_t>(layers) * experts);
  if (step < 0) step = forecaster_.intervals();
  observed_ = Eigen::Map<const Eigen::ArrayXd>(load_per_step.data(),
                                               static_cast<Eigen::Index>(load_per_step.size()));
  // The forecast error first: the forecast was made before this interval was seen.
  if (forecaster_.intervals() > 0) {
    error_forecast_ += (forecaster_.NextForecast() - observed_).abs().sum();
    error_last_ += (forecaster_.LastObserved() - observed_).abs().sum();
    load_sum_ += observed_.sum();
  }
  forecaster_.Update(observed_);
  coactivation_.NextInterval();
  if (tokens != nullptr) {
    for (int l = 0; l < layers && l < static_cast<int>(tokens->size()); ++l) {
      const LayerTokens& t = (*tokens)[l];
      coactivation_.AddTokens(l, t.expert_ids, t.top_k > 0 ? t.top_k : top_k_);
    }
    has_coactivation_ = true;
  }
  for (const CoactivationPair& p : pairs) {
    coactivation_.AddPair(p.layer_index, p.a, p.b, p.count);
    has_coactivation_ = true;
  }
  shifted_ = detector_.Update(observed_);
  for (int& n : intervals_since_shift_) ++n;
  for (int l : shifted_) {
    intervals_since_shift_[l] = 1;
    forecaster_.ResetSeries(l * experts, (l + 1) * experts);
    coactivation_.ResetLayer(l);
    decider_.ObserveRegimeChange(step);
  }
  if (options_.validation_intervals > 0) {
    recent_loads_.push_back(observed_);
    while (static_cast<int>(recent_loads_.size()) > options_.validation_intervals)
      recent_loads_.pop_front();
  }
  if (tokens != nullptr) {
    recent_tokens_.push_back(*tokens);
    while (static_cast<int>(recent_tokens_.size()) > std::max(1, options_.recent_token_intervals))
      recent_tokens_.pop_front();
  }
}

AffinityMatrix OnlineController::AffinityOf(int layer) const {
  const int experts = num_experts_;
  const Eigen::MatrixXd co = coactivation_.Layer(layer);
  AffinityMatrix affinity(experts);
  for (ExpertId a = 0; a < experts; ++a) {
    for (ExpertId b = a + 1; b < experts; ++b) {
      if (co(a, b) > 0) affinity.AddPair(a, b, co(a, b));
    }
  }
  return affinity;
}

bool OnlineController::AffordsTokenPlanning() const {
  const double limit = decider_.options().max_token_plan_work;
  const double work = static_cast<double>(num_experts()) * num_experts() * ranks_;
  return limit <= 0 || work <= limit;
}

AffinitySamplingOptions OnlineController::SamplingFor(int layer) const {
  AffinitySamplingOptions sampling;
  sampling.num_tokens = options_.affinity_tokens;
  sampling.seed = 1 + static_cast<uint64_t>(layer);  // the same draw for the same statistics
  return sampling;
}

std::vector<LayerStats> OnlineController::BuildForecast(int horizon,
                                                        std::vector<double>* uncertainty) const {
  const int layers = num_layers();
  const int experts = num_experts_;
  Eigen::ArrayXd horizon_forecast;
  forecaster_.Forecast(horizon, &horizon_forecast);
  std::vector<LayerStats> forecast(layers);
  for (int l = 0; l < layers; ++l) {
    LayerStats& f = forecast[l];
    f.layer_id = layer_ids_[l];
    f.top_k = top_k_;
    f.load.assign(horizon_forecast.data() + l * experts,
                  horizon_forecast.data() + (l + 1) * experts);
    if (!recent_tokens_.empty()) {
      // The recent intervals of the layer's current regime only: tokens from before a detected
      // shift would fit the plan to the workload that just left.
      LayerTokens tokens;
      tokens.top_k = top_k_;
      const size_t n = std::min(recent_tokens_.size(),
                                static_cast<size_t>(std::max(1, intervals_since_shift_[l])));
      for (size_t i = recent_tokens_.size() - n; i < recent_tokens_.size(); ++i) {
        const std::vector<LayerTokens>& interval = recent_tokens_[i];
        if (l >= static_cast<int>(interval.size())) continue;
        const std::vector<ExpertId>& ids = interval[l].expert_ids;
        tokens.expert_ids.insert(tokens.expert_ids.end(), ids.begin(), ids.end());
      }
      f.tokens = std::move(tokens);
    }
    if (has_coactivation_ && AffordsTokenPlanning()) {
      f.affinity = AffinityOf(l);
      // Pairs without tokens (graced's agents): tokens drawn from them let the planner group and
      // the cost model see what grouping saves.
      if (!f.tokens) f = WithAffinityTokens(f, SamplingFor(l));
    }
  }
  if (uncertainty != nullptr) {
    // Relative standard error of each layer's horizon forecast: the backtest error of the
    // selected models over the load, shrunk by the regime's sample count.
    Eigen::ArrayXd series_error;
    forecaster_.SelectedError(&series_error);
    uncertainty->assign(layers, 0.0);
    for (int l = 0; l < layers; ++l) {
      const double load = horizon_forecast.segment(l * experts, experts).sum();
      const double error = series_error.segment(l * experts, experts).sum();
      const double samples = forecaster_.RegimeSamples().segment(l * experts, experts).mean();
      if (load > 0) (*uncertainty)[l] = error / load / std::sqrt(std::max(1.0, samples));
    }
  }
  return forecast;
}

std::vector<LayerStats> OnlineController::BuildValidation() const {
  std::vector<LayerStats> validation;
  if (recent_loads_.empty()) return validation;
  const int experts = num_experts_;
  validation.resize(num_layers());
  for (int l = 0; l < num_layers(); ++l) {
    LayerStats& v = validation[l];
    v.layer_id = layer_ids_[l];
    v.top_k = top_k_;
    v.load.assign(experts, 0.0);
    // The latest intervals of the layer's current regime.
    const int n = std::min<int>(static_cast<int>(recent_loads_.size()),
                                std::max(1, intervals_since_shift_[l]));
    for (int i = 0; i < n; ++i) {
      const Eigen::ArrayXd& loads = recent_loads_[recent_loads_.size() - 1 - i];
      for (int e = 0; e < experts; ++e) v.load[e] += loads[l * experts + e] / n;
    }
    if (!recent_tokens_.empty() && l < static_cast<int>(recent_tokens_.back().size())) {
      LayerTokens tokens = recent_tokens_.back()[l];
      tokens.top_k = top_k_;
      v.tokens = std::move(tokens);
    } else if (has_coactivation_ && AffordsTokenPlanning()) {
      // The same co-activation as the forecast, on the validation's loads: a regroup's gain is
      // then checked against the recent loads, not dismissed by a load-only model.
      v.affinity = AffinityOf(l);
      v = WithAffinityTokens(v, SamplingFor(l));
    }
  }
  return validation;
}

Decision OnlineController::Decide(int64_t step, std::span<const LayerState> current) {
  if (forecaster_.intervals() < std::max<int64_t>(1, options_.warmup_intervals)) return {};
  std::vector<double> uncertainty;
  last_forecast_ = BuildForecast(decider_.horizon_steps(), &uncertainty);
  last_forecast_intervals_ = forecaster_.intervals();
  const std::vector<LayerStats> validation = BuildValidation();
  return decider_.Decide(step, current, last_forecast_, uncertainty, validation);
}

std::vector<LayerStats> OnlineController::ForecastStats() const {
  if (last_forecast_intervals_ == forecaster_.intervals()) return last_forecast_;
  return BuildForecast(decider_.horizon_steps(), nullptr);
}

}  // namespace grace
