// The epoch protocol under faults (docs/protocol.md, "Epochs"): 4 grace-agent processes on
// loopback behind a frame proxy (tests/testing/frame_proxy.h), one migration with the fault
// injected, then one more migration. Under every fault no step may mix epochs across ranks,
// every token's output must equal the dense reference, the outcome must be the one the
// protocol says, and the next migration must go through (nothing is left blocked).
#include <gtest/gtest.h>

#include "bench/migration_bench.h"

namespace grace {
namespace {

struct FaultCase {
  const char* name;
  const char* outcome;
};

// A small model at 40 steps per second: each case runs in seconds on two cores.
MigrationBenchOptions SmallCaseOptions() {
  MigrationBenchOptions o;
  o.agent_binary = GRACE_AGENT_BINARY;
  o.graced_binary = GRACED_BINARY;
  o.hidden = 32;
  o.ffn = 64;
  o.tokens_per_rank = 8;
  o.steps_per_second = 40;
  o.steps = 160;
  o.timeout = std::chrono::milliseconds(30000);
  o.connect_timeout_ms = 5000;  // bounds the agents' exit while a cancelled copy's rendezvous waits
  return o;
}

class EpochFaultTest : public ::testing::TestWithParam<FaultCase> {};

TEST_P(EpochFaultTest, NoStepMixesEpochsAndOutputStaysExact) {
  const MigrationBenchOptions o = SmallCaseOptions();
  StatusOr<nlohmann::json> r = RunMigrationFaultCase(o, GetParam().name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const nlohmann::json& j = *r;
  SCOPED_TRACE(j.dump(2));
  EXPECT_EQ(j["outcome"], GetParam().outcome);
  EXPECT_EQ(j["mixed_epoch_steps"].get<int64_t>(), 0);
  EXPECT_EQ(j["tokens_lost"].get<int64_t>(), 0);
  EXPECT_EQ(j["checksum_mismatches"].get<int64_t>(), 0);
  EXPECT_TRUE(j["next_migration_switched"].get<bool>());
  if (j.contains("sigterm")) {
    EXPECT_EQ(j["sigterm"]["exit_code"].get<int>(), 0);  // finished its step and left
    EXPECT_TRUE(j["sigterm"]["left"].get<bool>());       // Goodbye: not lost
  }
  if (std::string(GetParam().outcome) == "committed") {
    EXPECT_GE(j["epochs_served"].size(), 2u);  // the run really switched
  }
}

INSTANTIATE_TEST_SUITE_P(
    Faults, EpochFaultTest,
    ::testing::Values(FaultCase{"commit_delayed_past_switch_step", "committed"},
                      FaultCase{"commit_lost_to_one_agent", "committed"},
                      FaultCase{"cut_after_prepare", "aborted"},
                      FaultCase{"cut_after_ready", "aborted"},
                      FaultCase{"cut_after_commit", "committed"},
                      FaultCase{"daemon_killed_between_commits", "committed"},
                      FaultCase{"agent_sigkilled_after_ready", "aborted"},
                      FaultCase{"agent_sigstopped_after_ready", "aborted"},
                      FaultCase{"switched_never_reported", "committed"},
                      FaultCase{"agent_sigterm", "left"}),
    [](const ::testing::TestParamInfo<FaultCase>& i) { return std::string(i.param.name); });

// The real graced SIGKILLed between COMMIT sends and restarted on the same grace.db: no step
// mixes epochs, and every agent rejoins the restarted graced.
INSTANTIATE_TEST_SUITE_P(
    RealGraced, EpochFaultTest,
    ::testing::Values(FaultCase{"graced_sigkilled_between_commits", "committed"}),
    [](const ::testing::TestParamInfo<FaultCase>& i) { return std::string(i.param.name); });

// Expert weights corrupted in flight on the migration mesh (one byte of the first chunk rank 0
// sends rank 1, changed by a relay): rank 1's digest check fails, it never reports READY, graced
// aborts the migration everywhere, counts it once on /metrics and logs it once naming the layer,
// the expert and the source rank; no rank serves the prepared epoch, outputs stay exact, and the
// next migration switches.
TEST(MigrationIntegrityTest, WeightsCorruptedInFlightAbortEverywhereAndAreCounted) {
  const MigrationBenchOptions o = SmallCaseOptions();
  StatusOr<nlohmann::json> r = RunMigrationFaultCase(o, "weights_corrupted_in_flight");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const nlohmann::json& j = *r;
  SCOPED_TRACE(j.dump(2));
  ASSERT_TRUE(j["tampered"].get<bool>());
  EXPECT_EQ(j["outcome"], "aborted");
  EXPECT_FALSE(j["prepared_epoch_served"].get<bool>());
  EXPECT_EQ(j["integrity_failures"].get<double>(), 1);
  EXPECT_EQ(j["agent_outcomes"].value("integrity_failed", 0), 1);
  EXPECT_EQ(j["graced_log_lines"].get<int>(), 1);
  EXPECT_NE(j["graced_log"].get<std::string>().find("expert"), std::string::npos);
  EXPECT_NE(j["graced_log"].get<std::string>().find("from rank 0"), std::string::npos);
  EXPECT_EQ(j["mixed_epoch_steps"].get<int64_t>(), 0);
  EXPECT_EQ(j["tokens_lost"].get<int64_t>(), 0);
  EXPECT_EQ(j["checksum_mismatches"].get<int64_t>(), 0);
  EXPECT_TRUE(j["next_migration_switched"].get<bool>());
}

}  // namespace
}  // namespace grace
