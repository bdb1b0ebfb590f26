// LoadForecaster: one vectorised bank of load forecasters over every (layer, expert) series.
//
// Each interval the control plane feeds the observed load of every series (layer-major,
// [layer][expert], DeepSeek-V3 scale is 58 x 256 = 14,848 series) and asks for the mean load
// expected over the next `horizon` intervals. Four models run side by side on Eigen arrays, with
// no per-series virtual call in the hot loop:
//  - last value (the baseline every smarter model must beat),
//  - EWMA (exponentially weighted level),
//  - Holt (level and damped trend),
//  - regime mean (the mean since the last workload change, a window of at most
//    regime_window intervals: the best forecast of a stationary, noisy series),
//  - AR(p) on the deviation from a slow mean, fitted per series by ridge-regularised recursive
//    least squares with forgetting (the statistics update every interval; the p x p solve
//    is staggered, each series re-solving every ar_refit_every intervals).
// Unless ForecastOptions::forced_model pins one model, every series picks its model by rolling
// backtest error: each model's one-step-ahead forecast is scored against the next observation,
// the absolute errors decay geometrically, and the model with the smallest decayed error
// forecasts that series.
//
// When the workload changes (policy/change_detector.h), ResetSeries restarts a range of series
// from their latest observation so that stale history stops steering them.
//
// Thread contract: not thread-safe; owned and driven by one control thread. Pure computation.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <Eigen/Core>

namespace grace {

enum class ForecastModel : uint8_t {
  kEwma = 0,
  kHolt = 1,
  kAr = 2,
  kLastValue = 3,
  kRegimeMean = 4,
};
inline constexpr int kNumForecastModels = 5;
const char* ForecastModelName(ForecastModel model);
// The model named `name` ("ewma", "holt", "ar", "last_value", "regime_mean"), or nullopt.
std::optional<ForecastModel> ForecastModelFromName(std::string_view name);

struct ForecastOptions {
  double ewma_alpha = 0.3;
  int regime_window = 200;  // intervals the regime mean averages at most
  double holt_alpha = 0.4;
  double holt_beta = 0.1;
  double holt_damping = 0.98;  // trend multiplier per interval ahead, < 1 keeps trends bounded
  int ar_order = 3;
  double ar_forgetting = 0.98;   // weight of the past in the AR least-squares statistics
  double ar_ridge = 0.1;         // ridge, relative to the mean diagonal of the normal matrix
  double ar_mean_alpha = 0.05;   // the slow mean the AR model is centred on
  int ar_refit_every = 4;        // each series re-solves its AR fit every this many intervals
  double selection_decay = 0.9;  // weight of past backtest errors in model selection
  // -1: every series picks its model by backtest; else a ForecastModel that every series uses
  // (an operator's pin; the others still run and are scored, so unpinning is instant).
  int forced_model = -1;
};

class LoadForecaster {
 public:
  explicit LoadForecaster(int num_series, ForecastOptions options = {});

  int num_series() const { return num_series_; }
  int64_t intervals() const { return intervals_; }

  // Feeds one interval's load of every series (size num_series()).
  void Update(const Eigen::Ref<const Eigen::ArrayXd>& observed);

  // The mean load each series is expected to carry over the next `horizon` (>= 1) intervals,
  // from its selected model; never negative. Before the first Update, all zero.
  void Forecast(int horizon, Eigen::ArrayXd* out) const;
  // The one-step-ahead forecast of each series (Forecast(1, out)).
  const Eigen::ArrayXd& NextForecast() const { return next_; }
  // The last-value forecast: the latest observation.
  const Eigen::ArrayXd& LastObserved() const { return last_; }

  // Restarts series [begin, end) from their latest observation: levels set to it, trends and AR
  // statistics cleared (backtest errors kept: they measure noise, which outlives the change).
  void ResetSeries(int begin, int end);

  // The decayed absolute one-step backtest error of each series' selected model, and how many
  // intervals each series has seen since its last reset (its regime's sample count).
  void SelectedError(Eigen::ArrayXd* out) const;
  const Eigen::ArrayXd& RegimeSamples() const { return regime_count_; }

  ForecastModel SelectedModel(int series) const {
    return static_cast<ForecastModel>(selected_[series]);
  }
  // How many series currently use each model, indexed by ForecastModel.
  std::array<int, kNumForecastModels> ModelUsage() const;

 private:
  void UpdateAndFitAr(const Eigen::Ref<const Eigen::ArrayXd>& y);
  void PredictOneStep();

  int num_series_;
  ForecastOptions options_;
  int64_t intervals_ = 0;
  int p_;  // AR order

  Eigen::ArrayXd last_;
  Eigen::ArrayXd ewma_;
  Eigen::ArrayXd regime_mean_, regime_count_;
  Eigen::ArrayXd holt_level_, holt_trend_;
  Eigen::ArrayXd ar_mean_;
  // AR state, one contiguous column per lag or matrix entry, so updates run over all series.
  Eigen::ArrayXXd ar_lags_;    // [series][lag]: raw observations, lag 0 the latest
  Eigen::ArrayXXd ar_gram_;    // [series][p*p]: normal matrix, lower triangle used
  Eigen::ArrayXXd ar_rhs_;     // [series][p]
  Eigen::ArrayXXd ar_coef_;    // [series][p]
  Eigen::ArrayXi ar_samples_;  // regressions seen since the last reset

  Eigen::ArrayXXd one_step_;  // [series][model] one-step-ahead forecasts
  Eigen::ArrayXXd error_;     // [series][model] decayed absolute backtest errors
  Eigen::ArrayXi selected_;
  Eigen::ArrayXd next_;
  // Reused so that steady-state intervals do not allocate (Forecast is const but not
  // reentrant: the class is single-threaded).
  Eigen::ArrayXd scratch_;
  Eigen::ArrayXXd deviations_;  // [series][lag]
  // The AR series' horizon recursion, gathered into the leading rows.
  mutable Eigen::ArrayXXd horizon_lags_, horizon_coef_;  // [AR series][lag]
  mutable Eigen::ArrayXd horizon_next_, horizon_sum_, horizon_mean_;
  mutable Eigen::ArrayXi horizon_index_;
};

}  // namespace grace
