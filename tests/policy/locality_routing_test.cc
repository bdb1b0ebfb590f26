#include "policy/locality_routing.h"

#include <gtest/gtest.h>

#include <numeric>

namespace grace {
namespace {

Topology TwoByTwo(int slots) {
  Topology t;
  t.nodes = 2;
  t.gpus_per_node = 2;
  t.slots_per_gpu = slots;
  return t;
}

TEST(LocalityRouting, PrefersLocalThenSameNodeThenRemote) {
  const Topology topo = TwoByTwo(2);
  // Expert 0 on ranks 0 and 2; expert 1 only on rank 3.
  const std::vector<ExpertId> row = {0, kEmptySlot, 2, kEmptySlot, 0, kEmptySlot, 1, 3};
  const LayerRouting r = LocalityRouting(row, std::vector<double>{4, 1, 1, 1}, topo);
  ASSERT_EQ(r.Replicas(0).size(), 2u);       // slots 0 and 4
  EXPECT_EQ(r.Probabilities(0, 0)[0], 1.0);  // rank 0: its own copy
  EXPECT_EQ(r.Probabilities(1, 0)[0], 1.0);  // rank 1: same node as rank 0
  EXPECT_EQ(r.Probabilities(3, 0)[1], 1.0);  // rank 3: same node as rank 2
  EXPECT_EQ(r.Probabilities(0, 1)[0], 1.0);  // a single copy takes everything
}

TEST(LocalityRouting, RemoteWeightsFavourTheLessLoadedGpu) {
  const Topology topo = TwoByTwo(3);
  // Expert 0 on ranks 2 and 3 (node 1); rank 2 also holds the hot expert 1.
  const std::vector<ExpertId> row = {2, kEmptySlot, kEmptySlot, 3, kEmptySlot, kEmptySlot,
                                     0, 1,          kEmptySlot, 0, kEmptySlot, kEmptySlot};
  const LayerRouting r = LocalityRouting(row, std::vector<double>{4, 8, 1, 1}, topo);
  const auto p = r.Probabilities(0, 0);  // rank 0 is remote to both copies
  EXPECT_NEAR(p[0] + p[1], 1.0, 1e-12);
  EXPECT_LT(p[0], p[1]);  // slot 6 (rank 2, hot) gets less than slot 9 (rank 3)
}

TEST(LocalityRouting, BuildsARoutingTable) {
  const Topology topo = TwoByTwo(2);
  Placement placement;
  placement.num_experts = 4;
  placement.layer_ids = {7};
  placement.physical_to_logical = {{0, 1, 2, 0, 3, 1, 2, 3}};
  std::vector<LayerRouting> routings = {
      LocalityRouting(placement.physical_to_logical[0], std::vector<double>{3, 2, 2, 1}, topo)};
  StatusOr<std::shared_ptr<const RoutingTable>> table =
      BuildRoutingTable(1, topo, placement, routings);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ((*table)->TierOf(0, 0, 0), Tier::kLocal);
  EXPECT_EQ((*table)->TierOf(0, 0, 3), Tier::kRemote);
  for (RankId rank = 0; rank < 4; ++rank) {
    for (ExpertId e = 0; e < 4; ++e) {
      auto c = (*table)->Candidates(0, rank, e);
      ASSERT_FALSE(c.empty());
      EXPECT_FLOAT_EQ(c.back().cumulative_weight, 1.0f);
      for (const RouteCandidate& x : c) EXPECT_EQ(placement.physical_to_logical[0][x.slot], e);
    }
  }
}

TEST(LocalityRouting, RejectsWeightOutsideTheBestTier) {
  const Topology topo = TwoByTwo(2);
  Placement placement;
  placement.num_experts = 4;
  placement.layer_ids = {0};
  placement.physical_to_logical = {{0, 1, 2, 0, 3, 1, 2, 3}};
  std::vector<LayerRouting> routings = {UniformRouting(placement.physical_to_logical[0], 4, topo)};
  EXPECT_FALSE(BuildRoutingTable(1, topo, placement, routings).ok());
}

}  // namespace
}  // namespace grace
