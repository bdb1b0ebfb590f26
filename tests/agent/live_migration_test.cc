// Live migration end to end: grace-agent processes on loopback (2 of 2 ranks; 4 for the kill) with
// the test daemon (bench/migration_daemon.h) re-placing experts while the replay runs. Every
// token's output must match the dense reference, no step may mix epochs across ranks, and the bytes
// staged must be PlanMigration's minimum. Then one agent is SIGKILLed during a rate-limited
// transfer: the migration aborts, the other ranks' outputs stay exact, and the restarted agent
// rejoins at the current epoch and takes part in the next migration.
#include <gtest/gtest.h>

#include "bench/migration_bench.h"
#include "tests/testing/migration_expectations.h"

namespace grace {
namespace {

TEST(LiveMigrationTest, MigrationsKeepOutputExactAndKilledAgentRejoins) {
  MigrationBenchOptions o;
  o.agent_binary = GRACE_AGENT_BINARY;
  o.hidden = 32;
  o.ffn = 64;
  o.tokens_per_rank = 16;
  o.steps = 90;
  o.every_steps = 25;
  o.steps_per_second = 40;
  o.baseline = false;
  o.faults = false;  // epoch_faults_test runs them
  o.timeout = std::chrono::milliseconds(60000);
  auto result = RunMigrationBench(o);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const nlohmann::json& j = *result;
  SCOPED_TRACE(j.dump(2));

  testing::ExpectMigrationsSwitchedAndExact(j);

  const auto& k = j["sigkill"];
  EXPECT_TRUE(k["killed_migration_aborted"].get<bool>());
  EXPECT_EQ(k["tokens_lost"].get<int64_t>(), 0);
  EXPECT_EQ(k["tokens_duplicated"].get<int64_t>(), 0);
  EXPECT_EQ(k["token_mismatches"].get<int64_t>(), 0);
  EXPECT_EQ(k["checksum_mismatches"].get<int64_t>(), 0);
  EXPECT_EQ(k["mixed_epoch_steps"].get<int64_t>(), 0);
  EXPECT_EQ(k["restarted_hello_epoch"].get<uint64_t>(), 0u);  // a fresh process
  EXPECT_EQ(k["rejoined_serving_epoch"].get<uint64_t>(),
            k["current_epoch_at_rejoin"].get<uint64_t>());
  EXPECT_TRUE(k["next_migration_switched"].get<bool>());
}

}  // namespace
}  // namespace grace
