#include "daemon/interval_coactivation.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(IntervalCoactivationTest, SumsEachDistinctPairOnceAndStartsOverWhenTaken) {
  IntervalCoactivation co;
  co.Add(1, 0, 3, 8);
  co.Add(0, 2, 1, 4);
  co.Add(1, 3, 0, 16);  // the same pair, either order
  std::vector<CoactivationPair> got = co.Take();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].layer_index, 1);
  EXPECT_EQ(got[0].a, 0);
  EXPECT_EQ(got[0].b, 3);
  EXPECT_EQ(got[0].count, 24);
  EXPECT_EQ(got[1].layer_index, 0);
  EXPECT_EQ(got[1].a, 1);
  EXPECT_EQ(got[1].b, 2);
  EXPECT_EQ(got[1].count, 4);
  co.Add(1, 0, 3, 1);
  got = co.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].count, 1);
  EXPECT_TRUE(co.Take().empty());
}

TEST(IntervalCoactivationTest, ManyDistinctPairsSurviveTheTableGrowing) {
  IntervalCoactivation co;
  for (int round = 0; round < 2; ++round) {
    for (int l = 0; l < 58; ++l) {
      for (int a = 0; a < 40; ++a) {
        for (int b = a + 1; b < 40; ++b) co.Add(l, b, a, l + 1);
      }
    }
  }
  const std::vector<CoactivationPair> got = co.Take();
  ASSERT_EQ(got.size(), 58u * 40 * 39 / 2);
  for (const CoactivationPair& p : got) {
    ASSERT_LT(p.a, p.b);
    ASSERT_EQ(p.count, 2.0 * (p.layer_index + 1));
  }
}

}  // namespace
}  // namespace grace
