#include "migrate/migration_rounds.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

// 2 ranks of 4 slots, one layer.
Topology TwoRanksFourSlots() {
  Topology t;
  t.nodes = 1;
  t.gpus_per_node = 2;
  t.slots_per_gpu = 4;
  return t;
}

Placement Row(std::vector<ExpertId> row, int experts = 6) {
  Placement p;
  p.num_experts = experts;
  p.layer_ids = {0};
  p.physical_to_logical = {std::move(row)};
  return p;
}

TEST(MigrationRoundsTest, AMigrationWithinTheSparesRunsAtOnce) {
  const Topology t = TwoRanksFourSlots();
  Placement from = Row({0, 1, 2, 3, 4, 5, 0, 1}), to = Row({0, 4, 5, 3, 4, 5, 2, 1});
  EXPECT_EQ(NewSlotsOnRank(t, from, to, 0, 0), 2);
  MigrationRounds r = PlanMigrationRounds(t, from, to, {2, 2});
  ASSERT_EQ(r.rounds.size(), 1u);
  EXPECT_FALSE(r.fell_back);
  EXPECT_EQ(PlanMigrationRounds(t, from, to, {-1, -1}).rounds.size(), 1u);  // not limited
}

TEST(MigrationRoundsTest, OneSpareSplitsThreeNewExpertsIntoThreeValidRounds) {
  const Topology t = TwoRanksFourSlots();
  // Rank 0 takes three new experts (3, 4, 5, each held on rank 1 too), rank 1 takes 2 (rank
  // 0's only replica) in place of 3.
  Placement from = Row({0, 1, 2, 0, 3, 4, 5, 1}), to = Row({0, 3, 4, 5, 2, 4, 5, 1});
  EXPECT_EQ(NewSlotsOnRank(t, from, to, 0, 0), 3);
  MigrationRounds r = PlanMigrationRounds(t, from, to, {1, 1});
  EXPECT_FALSE(r.fell_back);
  ASSERT_EQ(r.rounds.size(), 3u);
  EXPECT_EQ(r.rounds.back().physical_to_logical, to.physical_to_logical);
  Placement prev = from;
  for (const Placement& p : r.rounds) {
    EXPECT_TRUE(p.Validate(t).ok()) << p.Validate(t).ToString();  // every expert served
    for (RankId rank = 0; rank < 2; ++rank) EXPECT_LE(NewSlotsOnRank(t, prev, p, 0, rank), 1);
    prev = p;
  }
}

TEST(MigrationRoundsTest, ASwapOfSoleReplicasIsTakenAsAPair) {
  const Topology t = TwoRanksFourSlots();
  // Experts 2 and 5 trade ranks, each its only replica, and rank 0 takes another new one.
  Placement from = Row({0, 1, 2, 3, 4, 5, 0, 1}), to = Row({0, 3, 5, 3, 4, 2, 0, 1});
  MigrationRounds r = PlanMigrationRounds(t, from, to, {1, 1});
  EXPECT_FALSE(r.fell_back);
  ASSERT_EQ(r.rounds.size(), 2u);
  for (const Placement& p : r.rounds) EXPECT_TRUE(p.Validate(t).ok());
}

TEST(MigrationRoundsTest, NoSafeSplitFallsBackToOneRound) {
  const Topology t = TwoRanksFourSlots();
  // Rank 0's four experts (sole replicas) rotate among its own slots: any single change, or
  // pair, loses one.
  Placement from = Row({0, 1, 2, 3, 4, 5, 4, 5}), to = Row({1, 2, 3, 0, 4, 5, 4, 5});
  MigrationRounds r = PlanMigrationRounds(t, from, to, {1, 1});
  EXPECT_TRUE(r.fell_back);
  ASSERT_EQ(r.rounds.size(), 1u);
  EXPECT_EQ(r.rounds[0].physical_to_logical, to.physical_to_logical);
}

}  // namespace
}  // namespace grace
