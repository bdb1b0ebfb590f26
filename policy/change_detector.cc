#include "policy/change_detector.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace grace {

LoadShiftDetector::LoadShiftDetector(int num_layers, int num_experts, ChangeDetectorOptions options)
    : num_layers_(num_layers), num_experts_(num_experts), options_(options) {
  recent_ = long_ = Eigen::ArrayXXd::Zero(num_experts, num_layers);
  divergence_ = cusum_ = base_mean_ = base_var_ = Eigen::ArrayXd::Zero(num_layers);
  quiet_until_ = Eigen::ArrayXi::Constant(num_layers, options.warmup_intervals);
  layer_age_ = Eigen::ArrayXi::Zero(num_layers);
  alarms_since_start_ = Eigen::ArrayXi::Zero(num_layers);
  baseline_samples_ = Eigen::ArrayXi::Zero(num_layers);
  settle_intervals_ = static_cast<int>(std::ceil(2.0 / std::max(1e-3, options.recent_alpha)));
  quiet_until_ += settle_intervals_;
}

std::vector<int> LoadShiftDetector::Update(const Eigen::Ref<const Eigen::ArrayXd>& loads) {
  assert(loads.size() == static_cast<Eigen::Index>(num_layers_) * num_experts_);
  Eigen::Map<const Eigen::ArrayXXd> by_layer(loads.data(), num_experts_, num_layers_);
  const Eigen::ArrayXd totals = by_layer.colwise().sum().transpose().max(1e-300);
  const Eigen::ArrayXXd shares = by_layer.rowwise() / totals.transpose();

  std::vector<int> fired;
  for (int l = 0; l < num_layers_; ++l) {
    // Windows start as running means so that the first intervals do not look like a shift.
    const double age = layer_age_[l] + 1.0;
    const double ra = std::max(1.0 / age, options_.recent_alpha);
    const double la = std::max(1.0 / age, options_.long_alpha);
    recent_.col(l) += ra * (shares.col(l) - recent_.col(l));
    long_.col(l) += la * (shares.col(l) - long_.col(l));
    ++layer_age_[l];
    const double d = 0.5 * (recent_.col(l) - long_.col(l)).abs().sum();
    divergence_[l] = d;

    if (intervals_ < quiet_until_[l]) {
      // Learn the noise baseline during the first warm-up only (after an alarm the old baseline
      // stands: the noise level depends on the batch size, not on the domain). The first few
      // intervals are skipped: while both windows are plain running means, d is near zero.
      const bool first_warmup = alarms_since_start_[l] == 0;
      if (first_warmup && layer_age_[l] >= settle_intervals_) {
        ++baseline_samples_[l];
        const double ba = std::max(1.0 / baseline_samples_[l], options_.baseline_alpha);
        const double delta = d - base_mean_[l];
        base_mean_[l] += ba * delta;
        base_var_[l] = (1.0 - ba) * (base_var_[l] + ba * delta * delta);
      }
      cusum_[l] = 0;
      continue;
    }
    const double spread =
        std::max(std::sqrt(base_var_[l]), options_.min_relative_spread * base_mean_[l] + 1e-12);
    const double z = (d - base_mean_[l]) / spread;
    cusum_[l] = std::max(0.0, cusum_[l] + z - options_.allowance_sd);
    if (cusum_[l] > options_.threshold_sd && d > base_mean_[l] + options_.min_divergence) {
      fired.push_back(l);
      ++alarms_;
      ++alarms_since_start_[l];
      layer_age_[l] = 0;  // both windows restart from the next interval
      cusum_[l] = 0;
      quiet_until_[l] = static_cast<int>(intervals_ + 1 + options_.refractory_intervals);
      continue;
    }
    // Only intervals that look stationary teach the baseline, so a slow shift cannot hide in it.
    if (z < options_.allowance_sd) {
      const double ba = options_.baseline_alpha;
      const double delta = d - base_mean_[l];
      base_mean_[l] += ba * delta;
      base_var_[l] = (1.0 - ba) * (base_var_[l] + ba * delta * delta);
    }
  }
  ++intervals_;
  return fired;
}

}  // namespace grace
