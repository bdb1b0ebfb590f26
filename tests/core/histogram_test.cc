#include "core/histogram.h"

#include <cmath>
#include <limits>
#include <sstream>

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(HistogramTest, BucketsAreCumulativeAndInclusiveOfTheirBound) {
  Histogram h({0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 11.0, 1e9}) h.Observe(v);
  EXPECT_EQ(h.CumulativeCount(0), 2u);  // 0.05, 0.1 (le is <=)
  EXPECT_EQ(h.CumulativeCount(1), 4u);  // + 0.5, 1
  EXPECT_EQ(h.CumulativeCount(2), 6u);  // + 3, 10
  EXPECT_EQ(h.CumulativeCount(3), 8u);  // +Inf: every observation
  EXPECT_EQ(h.count(), 8u);
  EXPECT_DOUBLE_EQ(h.sum(), 0.05 + 0.1 + 0.5 + 1 + 3 + 10 + 11 + 1e9);
}

TEST(HistogramTest, NanIsIgnoredAndInfinityGoesToTheLastBucket) {
  Histogram h({1});
  h.Observe(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.sum(), 0);
  h.Observe(-5);  // below every bound: the first bucket
  EXPECT_EQ(h.CumulativeCount(0), 1u);
  h.Observe(std::numeric_limits<double>::infinity());
  EXPECT_EQ(h.CumulativeCount(0), 1u);
  EXPECT_EQ(h.CumulativeCount(1), 2u);
}

TEST(HistogramTest, OneTwoFiveBoundsPrintAsTheirDecimals) {
  const std::vector<double> b = Histogram::OneTwoFiveBounds(0.001, 10);
  ASSERT_EQ(b.size(), 13u);
  std::ostringstream text;
  for (double v : b) text << v << ' ';
  EXPECT_EQ(text.str(), "0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 ");
  EXPECT_EQ(Histogram::OneTwoFiveBounds(0.25, 1), (std::vector<double>{0.25, 0.5, 1}));
  EXPECT_EQ(Histogram::OneTwoFiveBounds(3, 400), (std::vector<double>{5, 10, 25, 50, 100, 250}));
  EXPECT_TRUE(Histogram::OneTwoFiveBounds(0, 1).empty());
  EXPECT_TRUE(Histogram::OneTwoFiveBounds(2, 1).empty());
}

TEST(HistogramTest, EmptyHistogramHasOnlyTheInfBucket) {
  Histogram h({});
  h.Observe(3);
  EXPECT_EQ(h.CumulativeCount(0), 1u);
  EXPECT_EQ(h.count(), 1u);
}

}  // namespace
}  // namespace grace
