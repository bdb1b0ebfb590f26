#include "policy/forecast_coactivation.h"

#include <vector>

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(DecayedCoactivation, CountsPairsOfOneTokenAndForgetsGeometrically) {
  DecayedCoactivation co(/*num_layers=*/2, /*num_experts=*/4, /*decay=*/0.5);
  const std::vector<ExpertId> ids = {0, 1, 2, 3};  // two tokens, top-2: (0,1) and (2,3)
  co.AddTokens(1, ids, 2);
  EXPECT_DOUBLE_EQ(co.Layer(1)(0, 1), 1.0);
  EXPECT_DOUBLE_EQ(co.Layer(1)(1, 0), 1.0);
  EXPECT_DOUBLE_EQ(co.Layer(1)(2, 3), 1.0);
  EXPECT_DOUBLE_EQ(co.Layer(1)(0, 2), 0.0);
  EXPECT_DOUBLE_EQ(co.Layer(0).sum(), 0.0);
  co.NextInterval();
  co.NextInterval();
  EXPECT_DOUBLE_EQ(co.Layer(1)(0, 1), 0.25);
  co.AddTokens(1, std::vector<ExpertId>{1, 0}, 2);
  EXPECT_DOUBLE_EQ(co.Layer(1)(0, 1), 1.25);
  co.ResetLayer(1);
  EXPECT_DOUBLE_EQ(co.Layer(1).sum(), 0.0);
}

TEST(DecayedCoactivation, SurvivesManyIntervals) {
  DecayedCoactivation co(1, 2, 0.5);
  for (int t = 0; t < 5000; ++t) {
    co.NextInterval();
    co.AddMatrix(0, std::vector<double>{0, 1, 1, 0});
  }
  // Steady state of x = 0.5 x + 1.
  EXPECT_NEAR(co.Layer(0)(0, 1), 2.0, 1e-9);
}

}  // namespace
}  // namespace grace
