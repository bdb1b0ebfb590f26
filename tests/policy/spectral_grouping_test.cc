#include "policy/spectral_grouping.h"

#include <gtest/gtest.h>

#include <numeric>

namespace grace {
namespace {

// Two cliques {0,2,4,6} and {1,3,5,7}, weakly linked.
AffinityMatrix TwoCliques() {
  AffinityMatrix a(8);
  for (ExpertId x = 0; x < 8; ++x) {
    for (ExpertId y = x + 1; y < 8; ++y) a.AddPair(x, y, x % 2 == y % 2 ? 10.0 : 0.5);
  }
  return a;
}

TEST(SpectralGrouping, SeparatesClusters) {
  const AffinityMatrix a = TwoCliques();
  std::vector<ExpertId> members(8);
  std::iota(members.begin(), members.end(), 0);
  const std::vector<int> sizes = {4, 4};
  const std::vector<int> part = SpectralPartition(a, members, sizes);
  for (ExpertId e = 0; e < 8; ++e) EXPECT_EQ(part[e], part[e % 2]) << e;
  EXPECT_NE(part[0], part[1]);
}

TEST(SpectralGrouping, HonoursSizes) {
  const AffinityMatrix a = TwoCliques();
  std::vector<ExpertId> members(8);
  std::iota(members.begin(), members.end(), 0);
  const std::vector<int> sizes = {3, 2, 3};
  const std::vector<int> part = SpectralPartition(a, members, sizes);
  std::vector<int> count(3, 0);
  for (int p : part) ++count[p];
  EXPECT_EQ(count, sizes);
}

TEST(SpectralGrouping, SwapsRecoverClusters) {
  const AffinityMatrix a = TwoCliques();
  std::vector<int> part = {0, 0, 0, 0, 1, 1, 1, 1};  // mixed
  ImproveBySwaps(a, &part);
  EXPECT_DOUBLE_EQ(AffinityInsideParts(a, part), 2 * 6 * 10.0);
}

}  // namespace
}  // namespace grace
