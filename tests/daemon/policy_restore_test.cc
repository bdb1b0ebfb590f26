// What an operator set over the REST API outlives a restart of graced, unless graced.toml was
// edited since: each start is a RestorePolicy over the same history, with the config file's
// policy of that start.
#include "daemon/policy_restore.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "daemon/control_loop.h"

namespace grace {
namespace {

class PolicyRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteHistoryStore(":memory:");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  RestoredPolicy Start(const PolicySettings& file) {
    now_ += 1000;
    StatusOr<RestoredPolicy> r = RestorePolicy(*store_, file, now_);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : RestoredPolicy{};
  }
  void Set(const std::string& field, const std::string& before, const std::string& after) {
    now_ += 1000;
    ASSERT_TRUE(store_->RecordPolicyChange({now_, "api", field, before, after}).ok());
  }

  std::unique_ptr<HistoryStore> store_;
  int64_t now_ = 0;
};

TEST_F(PolicyRestoreTest, AnApiChangeOutlivesARestart) {
  PolicySettings file;
  file.interval_s = 5;
  EXPECT_EQ(Start(file).policy.interval_s, 5);
  Set("interval_s", "5.0", "2.0");
  Set("planner", "\"grace\"", "\"eplb\"");
  const RestoredPolicy again = Start(file);
  EXPECT_EQ(again.policy.interval_s, 2);
  EXPECT_EQ(again.policy.planner, "eplb");
  EXPECT_EQ(again.overrides.size(), 2u);
  EXPECT_FALSE(again.paused);
  // And the next restart, with nothing new, still.
  EXPECT_EQ(Start(file).policy.interval_s, 2);
}

TEST_F(PolicyRestoreTest, AnEditedConfigFileWinsOverAnOlderApiChange) {
  PolicySettings file;
  file.interval_s = 5;
  Start(file);
  Set("interval_s", "5.0", "2.0");
  file.interval_s = 10;  // the operator edits graced.toml, then restarts
  EXPECT_EQ(Start(file).policy.interval_s, 10);
  EXPECT_EQ(Start(file).policy.interval_s, 10);
  Set("interval_s", "10.0", "3.0");  // and a later API change wins again
  EXPECT_EQ(Start(file).policy.interval_s, 3);
}

TEST_F(PolicyRestoreTest, PauseSurvivesAsItWasLeft) {
  Start({});
  Set("paused", "false", "true");
  EXPECT_TRUE(Start({}).paused);
  Set("paused", "true", "false");
  EXPECT_FALSE(Start({}).paused);
}

TEST_F(PolicyRestoreTest, AValueTodaysRangesRefuseIsNamed) {
  Start({});
  Set("interval_s", "5.0", "-4.0");  // written by an older graced with other ranges
  StatusOr<RestoredPolicy> r = RestorePolicy(*store_, PolicySettings{}, now_ + 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("policy.interval_s"), std::string::npos)
      << r.status().ToString();
}

// The whole path: PUT /policy and pause on one graced, a new one on the same grace.db.
TEST(PolicyRestore, AControlLoopOnTheSameHistoryStartsWithIt) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("grace-policy-restore-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  DaemonConfig config;
  config.topology = {.nodes = 2, .gpus_per_node = 1, .slots_per_gpu = 3};
  config.model.num_experts = 4;
  config.model.top_k = 2;
  config.model.layer_ids = {3, 4};
  int64_t now = 1000000;
  auto open = [&] {
    auto store = OpenSqliteHistoryStore((dir / "grace.db").string());
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    auto loop =
        std::make_unique<ControlLoop>(config, std::move(store).value(), [&] { return now; });
    EXPECT_TRUE(loop->Init().ok());
    return loop;
  };
  {
    auto loop = open();
    PolicySettings p = loop->Policy();
    p.min_gain_ms = 42;
    ASSERT_TRUE(loop->SetPolicy(p, "api").ok());
    loop->SetPaused(true, "api");
  }
  now += 5000;
  auto loop = open();
  EXPECT_EQ(loop->Policy().min_gain_ms, 42);
  EXPECT_TRUE(loop->Metrics().paused);
  loop.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace grace
