// LoadShiftDetector: notices when the distribution of expert load in a layer shifts (a new
// workload domain), so forecasters and the re-placement decision stop trusting old history.
//
// Per layer it keeps two windows of load shares, recent (fast EWMA) and long (slow EWMA), and
// measures their total-variation distance d_t = 0.5 * sum_e |recent_e - long_e| each interval.
// On a stationary source d_t hovers at a sampling-noise level that depends on the batch size, so
// the detector learns that baseline (mean and spread of d_t, robustly floored) and runs a
// one-sided CUSUM on the standardised excess: S_t = max(0, S_{t-1} + (d_t - mu) / sigma - k).
// A layer fires when S_t > h; then both windows restart from the next interval, S restarts, and
// the layer is quiet for a refractory period while the windows settle.
//
//   LoadShiftDetector detector(layers, experts);
//   for each interval: for (int layer : detector.Update(loads)) forecaster.ResetSeries(...);
//
// Thread contract: not thread-safe; one control thread. Pure computation.
#pragma once

#include <cstdint>
#include <vector>

#include <Eigen/Core>

namespace grace {

struct ChangeDetectorOptions {
  double recent_alpha = 0.3;          // weight of the newest interval in the recent window
  double long_alpha = 0.02;           // ... in the long window
  double baseline_alpha = 0.05;       // how fast the noise baseline of d_t adapts
  int warmup_intervals = 20;          // intervals to learn the baseline before any alarm
  int refractory_intervals = 10;      // quiet intervals after an alarm
  double allowance_sd = 1.0;          // CUSUM k, in baseline spreads
  double threshold_sd = 12.0;         // CUSUM h, in baseline spreads
  double min_relative_spread = 0.25;  // spread floor, as a fraction of the baseline mean
  double min_divergence = 0.02;       // shifts below this total variation are never alarms
};

class LoadShiftDetector {
 public:
  LoadShiftDetector(int num_layers, int num_experts, ChangeDetectorOptions options = {});

  // Feeds one interval's loads, layer-major [layer][expert] (size layers * experts). Returns the
  // layer indices (0-based, in the order of the input) whose distribution shifted.
  std::vector<int> Update(const Eigen::Ref<const Eigen::ArrayXd>& loads);

  // Latest total-variation distance between the windows, and CUSUM statistic, per layer.
  const Eigen::ArrayXd& divergence() const { return divergence_; }
  const Eigen::ArrayXd& cusum() const { return cusum_; }
  int64_t alarms() const { return alarms_; }

 private:
  int num_layers_;
  int num_experts_;
  ChangeDetectorOptions options_;
  int64_t intervals_ = 0;
  int64_t alarms_ = 0;
  Eigen::ArrayXXd recent_;  // [expert][layer] shares
  Eigen::ArrayXXd long_;
  Eigen::ArrayXd divergence_, cusum_, base_mean_, base_var_;
  Eigen::ArrayXi quiet_until_;  // interval index before which a layer cannot fire
  Eigen::ArrayXi layer_age_;    // intervals since the layer's windows (re)started
  Eigen::ArrayXi alarms_since_start_;
  Eigen::ArrayXi baseline_samples_;
  int settle_intervals_ = 0;  // intervals until the two windows differ in memory
};

}  // namespace grace
