#include "core/routing_table.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

// 2 nodes x 2 GPUs x 2 slots; expert 0 on ranks 0 and 3, expert 1 on rank 1 and 2 (twice).
Placement SmallPlacement() {
  Placement p;
  p.num_experts = 3;
  p.layer_ids = {0};
  p.physical_to_logical = {{0, 2, 1, -1, 1, 1, 0, 2}};
  return p;
}

Topology SmallTopology() {
  Topology t;
  t.nodes = 2;
  t.gpus_per_node = 2;
  t.slots_per_gpu = 2;
  return t;
}

TEST(RoutingTableTest, PicksBestTierOnly) {
  RoutingTableBuilder b(7, SmallTopology(), SmallPlacement());
  auto table = b.Build();
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  const RoutingTable& t = **table;
  EXPECT_EQ(t.epoch(), 7u);
  EXPECT_EQ(t.TierOf(0, 0, 0), Tier::kLocal);
  EXPECT_EQ(t.TierOf(0, 0, 1), Tier::kSameNode);  // rank 1 is on node 0
  EXPECT_EQ(t.TierOf(0, 2, 0), Tier::kSameNode);  // rank 3 is on node 1
  EXPECT_EQ(t.TierOf(0, 3, 1), Tier::kSameNode);
  auto c = t.Candidates(0, 3, 1);
  ASSERT_EQ(c.size(), 2u);  // both slots on rank 2
  EXPECT_EQ(c[0].slot, 4);
  EXPECT_EQ(c[1].slot, 5);
  EXPECT_FLOAT_EQ(c[1].cumulative_weight, 1.0f);
  // Every candidate holds its expert.
  for (RankId r = 0; r < 4; ++r) {
    for (ExpertId e = 0; e < 3; ++e) {
      for (const RouteCandidate& rc : t.Candidates(0, r, e)) {
        EXPECT_EQ(t.placement().physical_to_logical[0][rc.slot], e);
      }
    }
  }
}

TEST(RoutingTableTest, WeightsAreNormalisedAndUsed) {
  RoutingTableBuilder b(1, SmallTopology(), SmallPlacement());
  ASSERT_EQ(b.BestTierSlots(0, 3, 1), (std::vector<SlotId>{4, 5}));
  std::vector<double> w = {3.0, 1.0};
  b.SetWeights(0, 3, 1, w);
  auto table = b.Build();
  ASSERT_TRUE(table.ok());
  auto c = (*table)->Candidates(0, 3, 1);
  EXPECT_FLOAT_EQ(c[0].cumulative_weight, 0.75f);
  EXPECT_EQ((*table)->Choose(0, 3, 1, 0.5f), 4);
  EXPECT_EQ((*table)->Choose(0, 3, 1, 0.8f), 5);
}

TEST(RoutingTableTest, WrongWeightCountFails) {
  RoutingTableBuilder b(1, SmallTopology(), SmallPlacement());
  std::vector<double> w = {1.0, 1.0, 1.0};
  b.SetWeights(0, 3, 1, w);
  auto table = b.Build();
  ASSERT_FALSE(table.ok());
  EXPECT_NE(table.status().message().find("rank 3, expert 1"), std::string::npos);
}

TEST(RoutingTableTest, InvalidPlacementFails) {
  Placement p = SmallPlacement();
  p.physical_to_logical[0][1] = -1;  // expert 2 keeps slot 7 only
  p.physical_to_logical[0][7] = -1;  // now none
  RoutingTableBuilder b(1, SmallTopology(), p);
  EXPECT_FALSE(b.Build().ok());
}

}  // namespace
}  // namespace grace
