#include "policy/forecast.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace grace {
namespace {

constexpr int kMaxArOrder = 8;

// Solves (G + ridge I) x = b for one symmetric positive semi-definite p x p system given by its
// lower triangle (row-major, stride p), by Cholesky. The ridge keeps it well posed.
// Entry k of the series' matrix lives at gram[k * stride] (column-major state, one column per
// entry), likewise rhs and x.
void SolveRidge(int p, const double* gram, const double* rhs, Eigen::Index stride,
                double ridge_fraction, double* x) {
  double trace = 0;
  for (int i = 0; i < p; ++i) trace += gram[(i * p + i) * stride];
  const double ridge = ridge_fraction * trace / p + 1e-9;
  double chol[kMaxArOrder * kMaxArOrder];
  for (int j = 0; j < p; ++j) {
    double s = gram[(j * p + j) * stride] + ridge;
    for (int k = 0; k < j; ++k) s -= chol[j * p + k] * chol[j * p + k];
    chol[j * p + j] = std::sqrt(std::max(s, 1e-12));
    for (int i = j + 1; i < p; ++i) {
      double t = gram[(i * p + j) * stride];
      for (int k = 0; k < j; ++k) t -= chol[i * p + k] * chol[j * p + k];
      chol[i * p + j] = t / chol[j * p + j];
    }
  }
  double w[kMaxArOrder];
  for (int i = 0; i < p; ++i) {
    double t = rhs[i * stride];
    for (int k = 0; k < i; ++k) t -= chol[i * p + k] * w[k];
    w[i] = t / chol[i * p + i];
  }
  for (int i = p - 1; i >= 0; --i) {
    double t = w[i];
    for (int k = i + 1; k < p; ++k) t -= chol[k * p + i] * x[k * stride];
    x[i * stride] = t / chol[i * p + i];
  }
}

}  // namespace

const char* ForecastModelName(ForecastModel model) {
  switch (model) {
    case ForecastModel::kEwma: return "ewma";
    case ForecastModel::kHolt: return "holt";
    case ForecastModel::kAr: return "ar";
    case ForecastModel::kLastValue: return "last_value";
    case ForecastModel::kRegimeMean: return "regime_mean";
  }
  return "unknown";
}

std::optional<ForecastModel> ForecastModelFromName(std::string_view name) {
  for (int m = 0; m < kNumForecastModels; ++m) {
    const auto model = static_cast<ForecastModel>(m);
    if (name == ForecastModelName(model)) return model;
  }
  return std::nullopt;
}

LoadForecaster::LoadForecaster(int num_series, ForecastOptions options)
    : num_series_(num_series), options_(options), p_(std::clamp(options.ar_order, 1, kMaxArOrder)) {
  const Eigen::Index n = num_series;
  last_ = ewma_ = holt_level_ = holt_trend_ = ar_mean_ = next_ = scratch_ = Eigen::ArrayXd::Zero(n);
  regime_mean_ = Eigen::ArrayXd::Zero(n);
  regime_count_ = Eigen::ArrayXd::Zero(n);
  ar_lags_ = Eigen::ArrayXXd::Zero(n, p_);
  ar_gram_ = Eigen::ArrayXXd::Zero(n, p_ * p_);
  ar_rhs_ = Eigen::ArrayXXd::Zero(n, p_);
  ar_coef_ = Eigen::ArrayXXd::Zero(n, p_);
  deviations_ = horizon_lags_ = horizon_coef_ = Eigen::ArrayXXd::Zero(n, p_);
  horizon_next_ = horizon_sum_ = horizon_mean_ = Eigen::ArrayXd::Zero(n);
  horizon_index_ = Eigen::ArrayXi::Zero(n);
  ar_samples_ = Eigen::ArrayXi::Zero(n);
  one_step_ = Eigen::ArrayXXd::Zero(n, kNumForecastModels);
  error_ = Eigen::ArrayXXd::Zero(n, kNumForecastModels);
  selected_ = Eigen::ArrayXi::Zero(n);
}

void LoadForecaster::Update(const Eigen::Ref<const Eigen::ArrayXd>& y) {
  assert(y.size() == num_series_);
  if (intervals_ == 0) {
    last_ = ewma_ = holt_level_ = ar_mean_ = regime_mean_ = y;
    regime_count_.setOnes();
    ar_lags_.colwise() = y;
    intervals_ = 1;
    PredictOneStep();
    return;
  }
  // Backtest: score the forecasts made last interval against what came.
  const double d = options_.selection_decay;
  error_ = d * error_ + (1.0 - d) * (one_step_.colwise() - y).abs();

  last_ = y;
  const double a = options_.ewma_alpha;
  ewma_ = a * y + (1.0 - a) * ewma_;
  regime_count_ =
      (regime_count_ + 1.0).min(static_cast<double>(std::max(1, options_.regime_window)));
  regime_mean_ += (y - regime_mean_) / regime_count_;

  const double ha = options_.holt_alpha, hb = options_.holt_beta, phi = options_.holt_damping;
  scratch_ = holt_level_;
  holt_level_ = ha * y + (1.0 - ha) * (holt_level_ + phi * holt_trend_);
  holt_trend_ = hb * (holt_level_ - scratch_) + (1.0 - hb) * phi * holt_trend_;

  UpdateAndFitAr(y);
  ++intervals_;
  PredictOneStep();
}

// AR: regress the deviation from the slow mean on the previous p deviations, by recursive least
// squares with forgetting, over all series at once; then re-solve the ridge system of the
// series whose turn it is (a fixed stripe per interval keeps the cost flat).
void LoadForecaster::UpdateAndFitAr(const Eigen::Ref<const Eigen::ArrayXd>& y) {
  const int p = p_;
  const double lambda = options_.ar_forgetting;
  // Lags hold raw observations, so a moving mean never leaves stale deviations behind.
  scratch_ = y - ar_mean_;                      // the regression target
  deviations_ = ar_lags_.colwise() - ar_mean_;  // the regressors (deviations)
  for (int i = 0; i < p; ++i) {
    ar_rhs_.col(i) = lambda * ar_rhs_.col(i) + deviations_.col(i) * scratch_;
    for (int j = 0; j <= i; ++j) {
      ar_gram_.col(i * p + j) =
          lambda * ar_gram_.col(i * p + j) + deviations_.col(i) * deviations_.col(j);
    }
  }
  for (int i = p - 1; i > 0; --i) ar_lags_.col(i) = ar_lags_.col(i - 1);
  ar_lags_.col(0) = y;
  ar_mean_ += options_.ar_mean_alpha * (y - ar_mean_);
  ar_samples_ += 1;

  const int every = std::max(1, options_.ar_refit_every);
  const Eigen::Index stride = num_series_;
  for (int s = static_cast<int>(intervals_ % every); s < num_series_; s += every) {
    double* coef = &ar_coef_(s, 0);
    if (ar_samples_[s] <= p) {
      for (int i = 0; i < p; ++i) coef[i * stride] = 0;  // silent until it has data
      continue;
    }
    SolveRidge(p, &ar_gram_(s, 0), &ar_rhs_(s, 0), stride, options_.ar_ridge, coef);
    // Keep the fitted process stable: sum |coef| < 1.
    double l1 = 0;
    for (int i = 0; i < p; ++i) l1 += std::abs(coef[i * stride]);
    if (l1 > 0.95) {
      for (int i = 0; i < p; ++i) coef[i * stride] *= 0.95 / l1;
    }
  }
}

void LoadForecaster::PredictOneStep() {
  one_step_.col(static_cast<int>(ForecastModel::kEwma)) = ewma_;
  one_step_.col(static_cast<int>(ForecastModel::kHolt)) =
      (holt_level_ + options_.holt_damping * holt_trend_).max(0.0);
  scratch_ = ar_mean_;
  for (int i = 0; i < p_; ++i) {
    scratch_ += ar_coef_.col(i) * (ar_lags_.col(i) - ar_mean_);
  }
  one_step_.col(static_cast<int>(ForecastModel::kAr)) = scratch_.max(0.0);
  one_step_.col(static_cast<int>(ForecastModel::kLastValue)) = last_;
  one_step_.col(static_cast<int>(ForecastModel::kRegimeMean)) = regime_mean_;

  if (options_.forced_model >= 0 && options_.forced_model < kNumForecastModels) {
    selected_.setConstant(options_.forced_model);
    next_ = one_step_.col(options_.forced_model);
    return;
  }
  // Rolling-backtest model selection: the smallest decayed error wins, ties to the lower index.
  for (int s = 0; s < num_series_; ++s) {
    int best = 0;
    for (int m = 1; m < kNumForecastModels; ++m) {
      if (error_(s, m) < error_(s, best)) best = m;
    }
    selected_[s] = best;
    next_[s] = one_step_(s, best);
  }
}

void LoadForecaster::Forecast(int horizon, Eigen::ArrayXd* out) const {
  horizon = std::max(1, horizon);
  out->resize(num_series_);
  if (horizon == 1) {
    *out = next_;
    return;
  }
  // Holt's damped trend over h intervals ahead adds trend * (phi + ... + phi^h); averaged over
  // h = 1..H that is trend times the mean of those partial sums.
  const double phi = options_.holt_damping;
  double partial = 0, power = 1, mean_partial = 0;
  for (int h = 1; h <= horizon; ++h) {
    power *= phi;
    partial += power;
    mean_partial += partial;
  }
  mean_partial /= horizon;
  // AR: iterate the recursion on deviations, vectorised over the series that use AR, gathered
  // into the leading rows of preallocated arrays. The lags form a ring: column (head + i) % p
  // holds the deviation i intervals before the newest.
  const int p = p_;
  Eigen::Index n = 0;
  for (int s = 0; s < num_series_; ++s) {
    if (selected_[s] != static_cast<int>(ForecastModel::kAr)) continue;
    horizon_index_[n] = s;
    horizon_mean_[n] = ar_mean_[s];
    for (int i = 0; i < p; ++i) {
      horizon_lags_(n, i) = ar_lags_(s, i) - ar_mean_[s];
      horizon_coef_(n, i) = ar_coef_(s, i);
    }
    ++n;
  }
  auto lags = horizon_lags_.topRows(n);
  auto coef = horizon_coef_.topRows(n);
  auto mean = horizon_mean_.head(n);
  auto next = horizon_next_.head(n);
  auto sum = horizon_sum_.head(n);
  sum.setZero();
  int head = 0;
  auto lag = [&](int i) { return lags.col((head + i) % p); };
  for (int h = 0; h < horizon && n > 0; ++h) {
    switch (p) {
      case 1: next = coef.col(0) * lag(0); break;
      case 2: next = coef.col(0) * lag(0) + coef.col(1) * lag(1); break;
      case 3: next = coef.col(0) * lag(0) + coef.col(1) * lag(1) + coef.col(2) * lag(2); break;
      default:
        next = coef.col(0) * lag(0);
        for (int i = 1; i < p; ++i) next += coef.col(i) * lag(i);
    }
    head = (head + p - 1) % p;  // the oldest lag's column becomes the newest
    lags.col(head) = next;
    sum += (mean + next).max(0.0);
  }
  Eigen::Index ar_row = 0;
  for (int s = 0; s < num_series_; ++s) {
    double value = 0;
    switch (static_cast<ForecastModel>(selected_[s])) {
      case ForecastModel::kEwma: value = ewma_[s]; break;
      case ForecastModel::kHolt: value = holt_level_[s] + mean_partial * holt_trend_[s]; break;
      case ForecastModel::kLastValue: value = last_[s]; break;
      case ForecastModel::kRegimeMean: value = regime_mean_[s]; break;
      case ForecastModel::kAr: value = horizon_sum_[ar_row++] / horizon; break;
    }
    (*out)[s] = std::max(0.0, value);
  }
}

void LoadForecaster::ResetSeries(int begin, int end) {
  begin = std::max(0, begin);
  end = std::min(num_series_, end);
  if (begin >= end) return;
  const Eigen::Index n = end - begin;
  ewma_.segment(begin, n) = last_.segment(begin, n);
  regime_mean_.segment(begin, n) = last_.segment(begin, n);
  regime_count_.segment(begin, n).setOnes();
  holt_level_.segment(begin, n) = last_.segment(begin, n);
  holt_trend_.segment(begin, n).setZero();
  ar_mean_.segment(begin, n) = last_.segment(begin, n);
  ar_lags_.middleRows(begin, n).colwise() = last_.segment(begin, n);
  ar_gram_.middleRows(begin, n).setZero();
  ar_rhs_.middleRows(begin, n).setZero();
  ar_coef_.middleRows(begin, n).setZero();
  ar_samples_.segment(begin, n).setZero();
  // Backtest errors stay: they measure the series' noise, which a workload change keeps.
  PredictOneStep();
}

void LoadForecaster::SelectedError(Eigen::ArrayXd* out) const {
  out->resize(num_series_);
  // The decayed errors start from zero: divide by the weight they have accumulated so far.
  const double d = options_.selection_decay;
  for (int s = 0; s < num_series_; ++s) {
    const double weight = 1.0 - std::pow(d, std::max<double>(0.0, intervals_ - 1.0));
    (*out)[s] = weight > 1e-9 ? error_(s, selected_[s]) / weight : 0.0;
  }
}

std::array<int, kNumForecastModels> LoadForecaster::ModelUsage() const {
  std::array<int, kNumForecastModels> usage{};
  for (int m = 0; m < kNumForecastModels; ++m) usage[m] = (selected_ == m).count();
  return usage;
}

}  // namespace grace
