#include "agent/live_counters.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(LiveCountersTest, SampledPairsOfTwoRanksBecomeTheTopPairsWithTheirMass) {
  // 5 experts, 1 token in 2 sampled (even token ids), top-3 experts.
  LiveCounters rank0(2, 5, 1, 2), rank1(2, 5, 1, 2);
  const int32_t ids0[] = {0, 1, 2, /*token 1, not sampled*/ 3, 4, 0, /*token 2*/ 0, 1, 3};
  const int64_t tokens0[] = {0, 1, 2};
  rank0.CountCoactivation(1, ids0, tokens0, 3, 3);
  const int32_t ids1[] = {1, 0, 4, /*token 5, not sampled*/ 0, 1, 2};
  const int64_t tokens1[] = {4, 5};
  rank1.CountCoactivation(1, ids1, tokens1, 2, 3);
  // By hand, pairs of the sampled tokens 0, 2 and 4: {0,1} x3, {0,2}, {1,2}, {0,3}, {1,3},
  // {0,4}, {1,4}: mass 9.
  std::vector<uint64_t> sums(rank0.pairs_per_layer(), 0);
  for (int l = 0; l < 2; ++l) {
    std::fill(sums.begin(), sums.end(), 0);
    rank0.TakePairs(l, sums);
    rank1.TakePairs(l, sums);
    LoadReport r;
    AppendTopPairs(l, sums, 5, 3, &r);
    if (l == 0) {
      EXPECT_TRUE(r.coactivation.empty());  // nothing sampled in layer 0
      continue;
    }
    ASSERT_EQ(r.coactivation.size(), 1u);
    const LoadReport::CoactivationLayer& c = r.coactivation[0];
    EXPECT_EQ(c.layer_index, 1u);
    EXPECT_EQ(c.sampled_mass, 9u);
    EXPECT_EQ(c.dropped_mass, 4u);  // 3 of the 7 pairs sent (3 + 1 + 1), 4 counts dropped
    ASSERT_EQ(c.pairs.size(), 3u);
    EXPECT_EQ(c.pairs[0].a, 0);
    EXPECT_EQ(c.pairs[0].b, 1);
    EXPECT_EQ(c.pairs[0].count, 3u);
    EXPECT_EQ(c.pairs[1].a, 0);  // ties: the lower pair first
    EXPECT_EQ(c.pairs[1].b, 2);
    EXPECT_EQ(c.pairs[2].a, 0);
    EXPECT_EQ(c.pairs[2].b, 3);
  }
  // Taken means zeroed.
  std::fill(sums.begin(), sums.end(), 0);
  rank0.TakePairs(1, sums);
  LoadReport again;
  AppendTopPairs(1, sums, 5, 3, &again);
  EXPECT_TRUE(again.coactivation.empty());
}

}  // namespace
}  // namespace grace
