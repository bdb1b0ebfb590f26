#include "policy/eplb.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

// EPLB's published example: 2 layers x 12 experts, 16 physical slots, 4 expert groups, 2 nodes,
// 8 GPUs (hierarchical).
TEST(Eplb, PublishedExample) {
  const std::vector<std::vector<double>> loads = {
      {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
      {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};
  StatusOr<std::vector<std::vector<ExpertId>>> rows = EplbRebalance(loads, 16, 4, 2, 8);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ((*rows)[0], (std::vector<ExpertId>{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1}));
  EXPECT_EQ((*rows)[1], (std::vector<ExpertId>{7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}));
}

TEST(Eplb, GlobalWhenGroupsDoNotDivideByNodes) {
  // 1 group, 2 nodes: global policy; the hottest expert gets both spare slots.
  StatusOr<std::vector<std::vector<ExpertId>>> rows =
      EplbRebalance({{100, 1, 1, 1, 1, 1}}, 8, 1, 2, 4);
  ASSERT_TRUE(rows.ok());
  int copies = 0;
  for (ExpertId e : (*rows)[0]) copies += e == 0;
  EXPECT_EQ(copies, 3);
}

TEST(Eplb, RejectsTooFewSlots) {
  EXPECT_FALSE(EplbRebalance({{1, 2, 3, 4}}, 2, 1, 1, 2).ok());
}

}  // namespace
}  // namespace grace
