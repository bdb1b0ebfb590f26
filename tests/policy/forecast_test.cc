#include "policy/forecast.h"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(LoadForecaster, ConstantSeriesForecastsTheConstant) {
  LoadForecaster f(3);
  Eigen::ArrayXd y(3);
  y << 5.0, 0.0, 100.0;
  for (int t = 0; t < 30; ++t) f.Update(y);
  Eigen::ArrayXd out;
  f.Forecast(10, &out);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out[i], y[i], 1e-6 * (1 + y[i]));
}

TEST(LoadForecaster, NoisyTrendPicksATrendModel) {
  const int n = 32;
  LoadForecaster f(n);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.0, 20.0);
  Eigen::ArrayXd y(n);
  for (int t = 0; t < 300; ++t) {
    for (int i = 0; i < n; ++i) y[i] = 100.0 + (5.0 + i) * t + noise(rng);
    f.Update(y);
  }
  const auto usage = f.ModelUsage();
  EXPECT_GT(
      usage[static_cast<int>(ForecastModel::kHolt)] + usage[static_cast<int>(ForecastModel::kAr)],
      n * 3 / 4);
}

TEST(LoadForecaster, OscillatingSeriesPicksAr) {
  LoadForecaster f(1);
  Eigen::ArrayXd y(1);
  for (int t = 0; t < 400; ++t) {
    y[0] = 100.0 + 30.0 * ((t % 2 == 0) ? 1.0 : -1.0);
    f.Update(y);
  }
  EXPECT_EQ(f.SelectedModel(0), ForecastModel::kAr);
  // Next is t = 400 (even): high.
  EXPECT_NEAR(f.NextForecast()[0], 130.0, 6.0);
}

TEST(LoadForecaster, NoisyStationarySeriesBeatsLastValue) {
  const int n = 64;
  LoadForecaster f(n);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(0.0, 10.0);
  Eigen::ArrayXd y(n);
  double err_model = 0, err_last = 0;
  for (int t = 0; t < 300; ++t) {
    for (int i = 0; i < n; ++i) y[i] = 100.0 + i + noise(rng);
    if (t >= 50) {
      err_model += (f.NextForecast() - y).abs().sum();
      err_last += (f.LastObserved() - y).abs().sum();
    }
    f.Update(y);
  }
  EXPECT_LT(err_model, 0.8 * err_last);
  EXPECT_EQ(f.ModelUsage()[static_cast<int>(ForecastModel::kLastValue)], 0);
}

TEST(LoadForecaster, ResetSeriesRestartsFromTheLatestObservation) {
  LoadForecaster f(4);
  Eigen::ArrayXd y = Eigen::ArrayXd::Constant(4, 10.0);
  for (int t = 0; t < 50; ++t) f.Update(y);
  y << 10.0, 10.0, 500.0, 500.0;
  f.Update(y);
  f.ResetSeries(2, 4);
  Eigen::ArrayXd out;
  f.Forecast(5, &out);
  EXPECT_NEAR(out[2], 500.0, 1e-9);
  EXPECT_NEAR(out[3], 500.0, 1e-9);
  EXPECT_NEAR(out[0], 10.0, 1e-9);
}

TEST(LoadForecaster, ForecastsAreNeverNegative) {
  LoadForecaster f(1);
  Eigen::ArrayXd y(1);
  for (int t = 0; t < 40; ++t) {
    y[0] = std::max(0.0, 100.0 - 10.0 * t);
    f.Update(y);
  }
  Eigen::ArrayXd out;
  f.Forecast(20, &out);
  EXPECT_GE(out[0], 0.0);
}

TEST(LoadForecaster, AForcedModelForecastsEverySeries) {
  // An oscillating series that selection hands to AR: pinned to last value, the forecast is the
  // latest observation and every series reports the pinned model.
  ForecastOptions options;
  options.forced_model = static_cast<int>(ForecastModel::kLastValue);
  LoadForecaster f(2, options);
  Eigen::ArrayXd y(2);
  for (int t = 0; t < 200; ++t) {
    y << 100.0 + 30.0 * ((t % 2 == 0) ? 1.0 : -1.0), 50.0 + t;
    f.Update(y);
  }
  EXPECT_EQ(f.SelectedModel(0), ForecastModel::kLastValue);
  EXPECT_EQ(f.SelectedModel(1), ForecastModel::kLastValue);
  EXPECT_EQ(f.ModelUsage()[static_cast<int>(ForecastModel::kLastValue)], 2);
  Eigen::ArrayXd out;
  f.Forecast(8, &out);
  EXPECT_DOUBLE_EQ(out[0], y[0]);
  EXPECT_DOUBLE_EQ(out[1], y[1]);

  options.forced_model = static_cast<int>(ForecastModel::kEwma);
  LoadForecaster ewma(1, options);
  Eigen::ArrayXd z(1);
  for (int t = 0; t < 400; ++t) {
    z[0] = 100.0 + 30.0 * ((t % 2 == 0) ? 1.0 : -1.0);
    ewma.Update(z);
  }
  EXPECT_EQ(ewma.SelectedModel(0), ForecastModel::kEwma);
  EXPECT_NEAR(ewma.NextForecast()[0], 100.0, 10.0);  // the level, not the oscillation
}

TEST(ForecastModelFromName, NamesRoundTrip) {
  for (int m = 0; m < kNumForecastModels; ++m) {
    const auto model = static_cast<ForecastModel>(m);
    EXPECT_EQ(ForecastModelFromName(ForecastModelName(model)), model);
  }
  EXPECT_EQ(ForecastModelFromName("holt"), ForecastModel::kHolt);
  EXPECT_FALSE(ForecastModelFromName("prophet").has_value());
}

}  // namespace
}  // namespace grace
