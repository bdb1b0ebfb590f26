// forecast_bench: the cost of one control interval of online forecasting at DeepSeek-V3 scale
// (58 MoE layers x 256 experts = 14,848 series): LoadForecaster::Update + Forecast over the
// decision horizon + LoadShiftDetector::Update. The budget is 1 ms per interval.
//
// Loads are multinomial batches (4096 tokens x top-8 per step) drawn from a skewed, slowly
// drifting profile, so every model and the detector do their real work. Prints the median and
// p99 over many intervals.
//
//   build/bench/forecast_bench [intervals]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <Eigen/Core>

#include "policy/change_detector.h"
#include "policy/forecast.h"
#include "policy/load_sampling.h"

int main(int argc, char** argv) {
  constexpr int kLayers = 58;
  constexpr int kExperts = 256;
  constexpr int kHorizon = 32;
  const int intervals = argc > 1 ? std::max(10, std::atoi(argv[1])) : 2000;

  std::mt19937_64 rng(42);
  std::vector<double> weights(kLayers * kExperts);
  std::lognormal_distribution<double> skew(0.0, 1.0);
  for (double& w : weights) w = skew(rng);

  // Pre-draw the batches so that sampling is not timed.
  constexpr int kDistinctBatches = 64;
  std::vector<Eigen::ArrayXd> batches;
  for (int b = 0; b < kDistinctBatches; ++b) {
    std::vector<double> counts = grace::SampleCountStep(weights, kExperts, 4096 * 8, 0.1, rng);
    batches.push_back(Eigen::Map<Eigen::ArrayXd>(counts.data(), kLayers * kExperts));
  }

  grace::LoadForecaster forecaster(kLayers * kExperts);
  grace::LoadShiftDetector detector(kLayers, kExperts);
  Eigen::ArrayXd forecast;
  std::vector<double> update_us, forecast_us, detect_us, total_us;
  double sink = 0;
  for (int t = 0; t < intervals; ++t) {
    const Eigen::ArrayXd& y = batches[t % kDistinctBatches];
    const auto t0 = std::chrono::steady_clock::now();
    forecaster.Update(y);
    const auto t1 = std::chrono::steady_clock::now();
    forecaster.Forecast(kHorizon, &forecast);
    const auto t2 = std::chrono::steady_clock::now();
    for (int layer : detector.Update(y)) {
      forecaster.ResetSeries(layer * kExperts, (layer + 1) * kExperts);
    }
    const auto t3 = std::chrono::steady_clock::now();
    sink += forecast[t % forecast.size()];
    auto us = [](auto a, auto b) {
      return std::chrono::duration<double, std::micro>(b - a).count();
    };
    update_us.push_back(us(t0, t1));
    forecast_us.push_back(us(t1, t2));
    detect_us.push_back(us(t2, t3));
    total_us.push_back(us(t0, t3));
  }
  auto quantile = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(q * (v.size() - 1))];
  };
  std::printf("forecast_bench: %d layers x %d experts = %d series, horizon %d, %d intervals\n",
              kLayers, kExperts, kLayers * kExperts, kHorizon, intervals);
  std::printf("  update             median %8.1f us  p99 %8.1f us\n", quantile(update_us, 0.5),
              quantile(update_us, 0.99));
  std::printf("  forecast(horizon)  median %8.1f us  p99 %8.1f us\n", quantile(forecast_us, 0.5),
              quantile(forecast_us, 0.99));
  std::printf("  change detector    median %8.1f us  p99 %8.1f us\n", quantile(detect_us, 0.5),
              quantile(detect_us, 0.99));
  std::printf("  interval total     median %8.1f us  p99 %8.1f us  (budget 1000 us: %s)\n",
              quantile(total_us, 0.5), quantile(total_us, 0.99),
              quantile(total_us, 0.5) <= 1000.0 ? "met" : "MISSED");
  const auto usage = forecaster.ModelUsage();
  std::printf("  models in use:");
  for (int m = 0; m < grace::kNumForecastModels; ++m) {
    std::printf(" %s %d", grace::ForecastModelName(static_cast<grace::ForecastModel>(m)), usage[m]);
  }
  std::printf("; detector alarms %lld\n", static_cast<long long>(detector.alarms()));
  return sink < 0 ? 1 : 0;
}
