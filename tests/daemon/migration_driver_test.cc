// MigrationDriver's rounds: with one spare slot per rank (from the agents' Hellos) a target
// that puts three new experts on rank 0 runs as three migrations, each PREPARE/READY/COMMIT/
// SWITCHED of its own epoch, persisted and recorded; an abort ends the rounds at the last
// committed one.
#include "daemon/migration_driver.h"

#include <map>
#include <vector>

#include <gtest/gtest.h>

namespace grace {
namespace {

Placement OneLayer(std::vector<ExpertId> row) {
  Placement p;
  p.num_experts = 6;
  p.layer_ids = {0};
  p.physical_to_logical = {std::move(row)};
  return p;
}

struct MigrationDriverTest : ::testing::Test {
  void SetUp() override {
    topo.nodes = 1;
    topo.gpus_per_node = 2;
    topo.slots_per_gpu = 4;
    auto s = OpenSqliteHistoryStore(":memory:");
    ASSERT_TRUE(s.ok());
    store = std::move(*s);
    driver = std::make_unique<MigrationDriver>(
        [this](const std::string& agent, const WireMessage& m) {
          sent[agent].push_back(m);
          return true;
        },
        *store, topo);
    driver->OnAgentJoined("a0", {0}, 1);
    driver->OnAgentJoined("a1", {1}, 1);
  }
  // Starts the migration from `from` to `to`.
  void Begin() {
    auto plan = PlanMigration(topo, from, to, 100);
    ASSERT_TRUE(plan.ok());
    MigrationTarget target;
    target.placement = to;
    target.states.resize(1);
    target.states[0].row = to.physical_to_logical[0];
    target.layers = {0};
    target.bytes = plan->total_bytes;
    ASSERT_TRUE(driver->Begin(2, target, *plan, {"a0", "a1"}, now, &from).ok());
  }
  Epoch LastPrepare(const std::string& agent) const {
    for (auto it = sent.at(agent).rbegin(); it != sent.at(agent).rend(); ++it) {
      if (const auto* p = std::get_if<Prepare>(&*it)) return p->epoch;
    }
    return 0;
  }

  Topology topo;
  std::unique_ptr<HistoryStore> store;
  std::unique_ptr<MigrationDriver> driver;
  std::map<std::string, std::vector<WireMessage>> sent;
  DaemonMetrics metrics;
  std::vector<LayerState> before = std::vector<LayerState>(1);
  int64_t now = 1000;
  const Placement from = OneLayer({0, 1, 2, 0, 3, 4, 5, 1});
  const Placement to = OneLayer({0, 3, 4, 5, 2, 4, 5, 1});
};

TEST_F(MigrationDriverTest, TooFewSpareSlotsRunTheMigrationInCommittedRounds) {
  Begin();
  EXPECT_EQ(driver->rounds(), 3);
  std::vector<Epoch> committed;
  for (int round = 1; round <= 3; ++round) {
    EXPECT_EQ(driver->round(), round);
    const Epoch e = LastPrepare("a0");
    ASSERT_EQ(LastPrepare("a1"), e);
    // Each round's PREPARE stages at most one new expert per rank.
    const auto& prepare = std::get<Prepare>(sent["a0"].back());
    std::map<int, int> per_rank;
    for (const WireTransfer& t : prepare.transfers) ++per_rank[t.dst_slot / 4];
    for (const auto& [rank, n] : per_rank) EXPECT_LE(n, 1) << "rank " << rank;
    driver->OnReady("a0", e);
    driver->OnReady("a1", e);
    auto target = driver->Advance(now += 10, 8, before, 1, &metrics);
    ASSERT_TRUE(target.has_value()) << "round " << round;
    EXPECT_TRUE(target->placement.Validate(topo).ok());
    EXPECT_EQ(target->placement.physical_to_logical == to.physical_to_logical, round == 3);
    committed.push_back(e);
    driver->OnSwitched("a0", e, 100);
    driver->OnSwitched("a1", e, 100);
    EXPECT_FALSE(driver->Advance(now += 10, 8, before, 1, &metrics).has_value());
  }
  EXPECT_TRUE(driver->idle());
  EXPECT_EQ(committed, (std::vector<Epoch>{2, 3, 4}));
  EXPECT_EQ(metrics.migrations_total, 3u);
  auto current = store->CurrentPlacement();
  ASSERT_TRUE(current.ok() && current->has_value());
  EXPECT_EQ((*current)->epoch, 4u);
  int rounds_recorded = 0;
  auto decisions = store->ListDecisions({});
  ASSERT_TRUE(decisions.ok());
  for (const StoredDecision& d : *decisions) rounds_recorded += d.action == "migration_round";
  EXPECT_EQ(rounds_recorded, 3);
}

TEST_F(MigrationDriverTest, AnAbortEndsTheRoundsAtTheLastCommittedOne) {
  Begin();
  Epoch e = LastPrepare("a0");
  driver->OnReady("a0", e);
  driver->OnReady("a1", e);
  ASSERT_TRUE(driver->Advance(now += 10, 8, before, 1, &metrics).has_value());
  driver->OnSwitched("a0", e, 100);
  driver->OnSwitched("a1", e, 100);
  (void)driver->Advance(now += 10, 8, before, 1, &metrics);
  e = LastPrepare("a0");
  EXPECT_EQ(driver->round(), 2);
  driver->OnAgentAbort("a1", e, "no free spare slot");
  EXPECT_FALSE(driver->Advance(now += 10, 8, before, 1, &metrics).has_value());
  EXPECT_TRUE(driver->idle());
  EXPECT_EQ(driver->rounds(), 0);
  EXPECT_EQ(metrics.migrations_aborted_total, 1u);
}

TEST_F(MigrationDriverTest, EnoughSpareSlotsRunAtOnce) {
  driver->OnAgentJoined("a0", {0}, 4);
  Begin();
  EXPECT_EQ(driver->rounds(), 0);
  const Epoch e = LastPrepare("a0");
  driver->OnReady("a0", e);
  driver->OnReady("a1", e);
  auto target = driver->Advance(now += 10, 8, before, 1, &metrics);
  ASSERT_TRUE(target.has_value());
  EXPECT_EQ(target->placement.physical_to_logical, to.physical_to_logical);
}

}  // namespace
}  // namespace grace
