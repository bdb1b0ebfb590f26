// Migration in rounds end to end: two grace-agent processes on loopback with one spare expert
// slot each ([migration].spare_slots = 1), the test daemon (bench/migration_daemon.h) and a
// re-placement that needs three new experts on rank 0. Tried at once, rank 0 cannot stage it
// and the migration aborts; split by PlanMigrationRounds (what graced does) it runs as three
// committed epochs, each switching every rank at the same step, and every token's output
// equals the dense reference.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <unistd.h>

#include "bench/migration_run.h"
#include "migrate/migration_rounds.h"

namespace grace {
namespace {

using std::chrono::milliseconds;

Placement OneLayer(std::vector<ExpertId> row) {
  Placement p;
  p.num_experts = 6;
  p.layer_ids = {0};
  p.physical_to_logical = {std::move(row)};
  return p;
}

TEST(LiveMigrationRoundsTest, ThreeNewExpertsOnOneSpareSlotRunInThreeCommittedRounds) {
  MigrationBenchOptions o;
  o.agent_binary = GRACE_AGENT_BINARY;
  o.experts = 6;
  o.layers = 1;
  o.hidden = 32;
  o.ffn = 64;
  o.slots_per_rank = 4;
  o.tokens_per_rank = 16;
  o.steps = 240;
  o.steps_per_second = 40;
  o.spare_slots = 1;
  Topology topo;
  topo.nodes = 1;
  topo.gpus_per_node = 2;
  topo.slots_per_gpu = 4;
  const Placement from = OneLayer({0, 1, 2, 0, 3, 4, 5, 1});
  const Placement to = OneLayer({0, 3, 4, 5, 2, 4, 5, 1});
  ASSERT_EQ(NewSlotsOnRank(topo, from, to, 0, 0), 3);

  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("grace_migration_rounds_" + std::to_string(::getpid())))
                              .string();
  MigrationTestDaemonOptions d = DaemonOptions(o, topo);
  d.placement = from;
  MigrationTestDaemon daemon(d);
  ASSERT_TRUE(daemon.Start().ok());
  auto setup = WriteConfigs(o, topo, dir, daemon.port(), 0, /*ranks_per_agent=*/1);
  ASSERT_TRUE(setup.ok()) << setup.status().ToString();
  Cluster cluster;
  ASSERT_TRUE(cluster.Start(o.agent_binary, *setup).ok());
  ASSERT_TRUE(daemon.WaitForAgents(2, milliseconds(30000)).ok());
  ASSERT_TRUE(daemon.WaitForStep(20, milliseconds(30000)).ok());
  // The agents said how many spares they have.
  EXPECT_EQ(daemon.spare_slots_per_rank(), (std::vector<int>{1, 1}));

  // At once: rank 0 has one spare slot for three new experts, so it refuses (ABORT).
  auto at_once = daemon.Migrate(to, milliseconds(30000));
  ASSERT_TRUE(at_once.ok()) << at_once.status().ToString();
  EXPECT_FALSE(at_once->committed);
  EXPECT_NE(at_once->abort_reason.find("spare"), std::string::npos) << at_once->abort_reason;

  MigrationRounds rounds = PlanMigrationRounds(topo, from, to, daemon.spare_slots_per_rank());
  EXPECT_FALSE(rounds.fell_back);
  ASSERT_GE(rounds.rounds.size(), 3u);
  std::vector<Epoch> epochs;
  for (const Placement& p : rounds.rounds) {
    auto m = daemon.Migrate(p, milliseconds(30000));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_TRUE(m->switched) << "epoch " << m->epoch << ": " << m->abort_reason;
    epochs.push_back(m->epoch);
  }
  EXPECT_EQ(daemon.placement().physical_to_logical, to.physical_to_logical);
  ASSERT_TRUE(cluster.Wait(milliseconds(60000)).ok());

  auto check = CheckRun(o, topo, dir);
  ASSERT_TRUE(check.ok()) << check.status().ToString();
  EXPECT_EQ(check->mixed_epoch_steps, 0);
  EXPECT_EQ(check->tokens_lost, 0);
  EXPECT_EQ(check->token_mismatches, 0);
  EXPECT_EQ(check->checksum_mismatches, 0);
  // Every round's epoch was served, in order.
  for (Epoch e : epochs) {
    EXPECT_NE(std::find(check->step_epoch.begin(), check->step_epoch.end(), e),
              check->step_epoch.end())
        << "epoch " << e << " never served";
  }
  EXPECT_EQ(check->step_epoch.back(), epochs.back());
  daemon.Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace grace
