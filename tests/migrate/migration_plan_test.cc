#include "migrate/migration_plan.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

Topology TwoNodesTwoGpusTwoSlots() {
  Topology t;
  t.nodes = 2;
  t.gpus_per_node = 2;
  t.slots_per_gpu = 2;
  return t;
}

Placement Row(std::vector<ExpertId> row, int experts = 4) {
  Placement p;
  p.num_experts = experts;
  p.layer_ids = {5};
  p.physical_to_logical = {std::move(row)};
  return p;
}

TEST(MigrationPlanTest, IdenticalPlacementsMoveNothing) {
  Placement p = Row({0, 1, 2, 3, -1, 0, -1, 1});
  auto plan = PlanMigration(TwoNodesTwoGpusTwoSlots(), p, p, 100);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_TRUE(plan->empty());
  EXPECT_EQ(plan->total_bytes, 0u);
}

TEST(MigrationPlanTest, PrefersSameGpuThenSameNodeSource) {
  // Old: rank0 {0,1} rank1 {2,3} rank2 {-1,-1} rank3 {3,-1}
  Placement from = Row({0, 1, 2, 3, -1, -1, 3, -1});
  // New: rank0 gets a second 0 on slot 1 (local copy from slot 0); rank2 gets 3 (from rank3,
  // same node, not rank 1 on the other node); slot 6 keeps 3; emptied slot costs nothing.
  Placement to = Row({0, 0, 2, 1, 3, -1, 3, 1});
  auto plan = PlanMigration(TwoNodesTwoGpusTwoSlots(), from, to, 10);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->transfers.size(), 4u);
  const ExpertTransfer& local = plan->transfers[0];
  EXPECT_EQ(local.dst_slot, 1);
  EXPECT_EQ(local.src_slot, 0);
  EXPECT_EQ(local.link, Tier::kLocal);
  const ExpertTransfer& to_slot3 = plan->transfers[1];  // expert 1 from slot 1, same node
  EXPECT_EQ(to_slot3.src_slot, 1);
  EXPECT_EQ(to_slot3.link, Tier::kSameNode);
  const ExpertTransfer& to_slot4 = plan->transfers[2];  // expert 3: rank 3 is on node 1 too
  EXPECT_EQ(to_slot4.src_slot, 6);
  EXPECT_EQ(to_slot4.link, Tier::kSameNode);
  const ExpertTransfer& to_slot7 = plan->transfers[3];  // expert 1 only on node 0
  EXPECT_EQ(to_slot7.link, Tier::kRemote);
  EXPECT_EQ(plan->total_bytes, 40u);
  EXPECT_EQ(plan->local_bytes, 10u);
  EXPECT_EQ(plan->intra_node_bytes, 20u);
  EXPECT_EQ(plan->inter_node_bytes, 10u);
  EXPECT_EQ(MigrationBytes(from, to, 10), plan->total_bytes);
}

TEST(MigrationPlanTest, SpreadsCopiesOverEquallyNearSenders) {
  // Expert 0 lives on ranks 0 and 1 (node 0); node 1 needs four copies of it: two senders share.
  Placement from = Row({0, 1, 0, 2, 3, -1, -1, -1});
  Placement to = Row({0, 1, 0, 2, 3, 0, 0, 0});
  auto plan = PlanMigration(TwoNodesTwoGpusTwoSlots(), from, to, 7);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->transfers.size(), 3u);
  // Slot 5 is on rank 2 (node 1): rank 2 has expert 3 only, so expert 0 comes from node 0.
  EXPECT_EQ(plan->send_bytes_per_rank[0] + plan->send_bytes_per_rank[1], 21u);
  EXPECT_LE(plan->send_bytes_per_rank[0], 14u);
  EXPECT_LE(plan->send_bytes_per_rank[1], 14u);
  EXPECT_GT(plan->send_bytes_per_rank[0], 0u);
  EXPECT_GT(plan->send_bytes_per_rank[1], 0u);
}

TEST(MigrationPlanTest, MismatchedShapesAreRejected) {
  Placement from = Row({0, 1, 2, 3, -1, -1, 3, -1});
  Placement to = Row({0, 1, 2, 3, 4, -1, 3, -1}, 5);
  auto plan = PlanMigration(TwoNodesTwoGpusTwoSlots(), from, to, 1);
  EXPECT_FALSE(plan.ok());
}

}  // namespace
}  // namespace grace
