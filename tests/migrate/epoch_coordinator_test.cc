#include "migrate/epoch_coordinator.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

class EpochCoordinatorTest : public ::testing::Test {
 protected:
  EpochCoordinatorTest()
      : coordinator_([this](const std::string& agent, const WireMessage& m) {
          if (agent == disconnected_) return false;
          sent_.push_back(agent + ":" + MessageTypeName(TypeOf(m)));
          last_[agent] = m;
          return true;
        }) {
    topology_.nodes = 1;
    topology_.gpus_per_node = 2;
    topology_.slots_per_gpu = 2;
    placement_.num_experts = 3;
    placement_.layer_ids = {0};
    placement_.physical_to_logical = {{0, 1, 2, 0}};
  }

  void BeginWithTwoAgents(int64_t now_ms = 0) {
    MigrationPlan plan;
    plan.transfers.push_back({0, 0, 0, 3, 0, 1, Tier::kSameNode, 64});
    ASSERT_TRUE(coordinator_.Begin(2, placement_, topology_, plan, {"a", "b"}, now_ms).ok());
  }

  Topology topology_;
  Placement placement_;
  std::vector<std::string> sent_;
  std::map<std::string, WireMessage> last_;
  std::string disconnected_;
  EpochCoordinator coordinator_;
};

TEST_F(EpochCoordinatorTest, FullProtocolSwitchesPastEveryReportedStep) {
  BeginWithTwoAgents();
  EXPECT_EQ(sent_, (std::vector<std::string>{"a:Prepare", "b:Prepare"}));
  EXPECT_EQ(std::get<Prepare>(last_["a"]).transfers.size(), 1u);
  coordinator_.OnStep("a", 100);
  coordinator_.OnStep("b", 103);
  coordinator_.OnReady("a", 2);
  EXPECT_EQ(coordinator_.Poll(10), EpochCoordinator::Phase::kPreparing);
  EXPECT_EQ(coordinator_.Waiting(), (std::vector<std::string>{"b"}));
  coordinator_.OnReady("b", 1);  // a stale epoch does not count
  EXPECT_EQ(coordinator_.Poll(11), EpochCoordinator::Phase::kPreparing);
  coordinator_.OnReady("b", 2);
  EXPECT_EQ(coordinator_.Poll(12), EpochCoordinator::Phase::kReadyToCommit);
  auto step = coordinator_.Commit(13);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(*step, 103u + 8u);  // past the newest step any agent reported
  EXPECT_EQ(std::get<Commit>(last_["a"]).switch_step, *step);
  EXPECT_EQ(std::get<Commit>(last_["b"]).switch_step, *step);
  coordinator_.OnSwitched("a", 2, *step);
  EXPECT_EQ(coordinator_.Poll(20), EpochCoordinator::Phase::kCommitted);
  coordinator_.OnSwitched("b", 2, *step);
  EXPECT_EQ(coordinator_.Poll(25), EpochCoordinator::Phase::kDone);
  EXPECT_EQ(coordinator_.prepare_to_switch_ms(), 25);
  coordinator_.Reset();
  EXPECT_EQ(coordinator_.phase(), EpochCoordinator::Phase::kIdle);
}

TEST_F(EpochCoordinatorTest, LostAgentBeforeCommitAborts) {
  BeginWithTwoAgents();
  coordinator_.OnReady("a", 2);
  coordinator_.OnAgentLost("b");
  EXPECT_EQ(coordinator_.Poll(1), EpochCoordinator::Phase::kAborted);
  EXPECT_NE(coordinator_.abort_reason().find("agent b was lost before COMMIT"), std::string::npos);
  EXPECT_EQ(sent_.back(), "b:Abort");
  EXPECT_EQ(std::get<Abort>(last_["a"]).epoch, 2u);
  EXPECT_FALSE(coordinator_.Commit(2).ok());
  coordinator_.Reset();
  // An aborted attempt uses its number up: a retry is the next number (its stale messages
  // cannot be taken for the retry's, and the copy mesh of the retry gets another port).
  MigrationPlan plan;
  EXPECT_EQ(coordinator_.Begin(2, placement_, topology_, plan, {"a", "b"}, 5).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(coordinator_.next_epoch(1), 3u);
  EXPECT_TRUE(coordinator_.Begin(3, placement_, topology_, plan, {"a", "b"}, 5).ok());
  coordinator_.OnReady("a", 2);  // the aborted attempt's READY does not count
  coordinator_.OnReady("b", 2);
  EXPECT_EQ(coordinator_.Poll(6), EpochCoordinator::Phase::kPreparing);
}

TEST_F(EpochCoordinatorTest, ReadyTimeoutAbortsNamingTheSlowAgent) {
  BeginWithTwoAgents(1000);
  coordinator_.OnReady("a", 2);
  EXPECT_EQ(coordinator_.Poll(1000 + 30000), EpochCoordinator::Phase::kPreparing);
  EXPECT_EQ(coordinator_.Poll(1000 + 30001), EpochCoordinator::Phase::kAborted);
  EXPECT_NE(coordinator_.abort_reason().find("from b"), std::string::npos);
}

TEST_F(EpochCoordinatorTest, LostAgentAfterCommitDoesNotUndoTheEpoch) {
  BeginWithTwoAgents();
  coordinator_.OnReady("a", 2);
  coordinator_.OnReady("b", 2);
  ASSERT_EQ(coordinator_.Poll(1), EpochCoordinator::Phase::kReadyToCommit);
  auto step = coordinator_.Commit(2);
  ASSERT_TRUE(step.ok());
  coordinator_.OnSwitched("a", 2, *step);
  coordinator_.OnAgentLost("b");
  EXPECT_EQ(coordinator_.Poll(3), EpochCoordinator::Phase::kDone);
  coordinator_.Reset();
  MigrationPlan plan;
  // Epochs only grow: 2 is committed now.
  EXPECT_FALSE(coordinator_.Begin(2, placement_, topology_, plan, {"a"}, 4).ok());
  EXPECT_TRUE(coordinator_.Begin(3, placement_, topology_, plan, {"a"}, 4).ok());
}

TEST_F(EpochCoordinatorTest, DisconnectedAgentAbortsAtBegin) {
  disconnected_ = "b";
  MigrationPlan plan;
  Status s = coordinator_.Begin(2, placement_, topology_, plan, {"a", "b"}, 0);
  EXPECT_EQ(s.code(), StatusCode::kAborted);
  EXPECT_EQ(coordinator_.phase(), EpochCoordinator::Phase::kAborted);
  EXPECT_EQ(sent_.back(), "a:Abort");
}

TEST_F(EpochCoordinatorTest, SecondBeginWhileBusyIsRefused) {
  BeginWithTwoAgents();
  MigrationPlan plan;
  EXPECT_EQ(coordinator_.Begin(3, placement_, topology_, plan, {"a"}, 0).code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(EpochCoordinatorTest, MissingSwitchedEndsTheWaitAtTheSwitchTimeout) {
  BeginWithTwoAgents();
  coordinator_.OnReady("a", 2);
  coordinator_.OnReady("b", 2);
  ASSERT_EQ(coordinator_.Poll(1), EpochCoordinator::Phase::kReadyToCommit);
  auto step = coordinator_.Commit(2);
  ASSERT_TRUE(step.ok());
  coordinator_.OnSwitched("a", 2, *step);
  EXPECT_EQ(coordinator_.Poll(2 + EpochCoordinatorOptions{}.switch_timeout_ms),
            EpochCoordinator::Phase::kCommitted);
  EXPECT_EQ(coordinator_.age_ms(2000), 2000);
  // Past the deadline: done, the epoch stands, and the agent it waited for is named.
  EXPECT_EQ(coordinator_.Poll(3 + EpochCoordinatorOptions{}.switch_timeout_ms),
            EpochCoordinator::Phase::kDone);
  EXPECT_EQ(coordinator_.unconfirmed(), (std::vector<std::string>{"b"}));
  EXPECT_NE(coordinator_.switch_timed_out().find("from b"), std::string::npos);
  coordinator_.Reset();
  EXPECT_EQ(coordinator_.age_ms(100000), 0);
  MigrationPlan plan;
  EXPECT_TRUE(coordinator_.Begin(3, placement_, topology_, plan, {"a", "b"}, 4).ok());
}

TEST_F(EpochCoordinatorTest, ParticipantReconnectingBeforeCommitAborts) {
  BeginWithTwoAgents();
  coordinator_.OnReady("a", 2);
  coordinator_.OnAgentJoined("c");  // not a participant
  EXPECT_EQ(coordinator_.Poll(1), EpochCoordinator::Phase::kPreparing);
  coordinator_.OnAgentJoined("a");  // its READY was on the old connection
  EXPECT_EQ(coordinator_.Poll(2), EpochCoordinator::Phase::kAborted);
  EXPECT_EQ(coordinator_.abort_phase(), EpochCoordinator::Phase::kPreparing);
  EXPECT_NE(coordinator_.abort_reason().find("reconnected"), std::string::npos);
}

TEST_F(EpochCoordinatorTest, ReconnectAfterCommitKeepsTheEpoch) {
  BeginWithTwoAgents();
  coordinator_.OnReady("a", 2);
  coordinator_.OnReady("b", 2);
  ASSERT_EQ(coordinator_.Poll(1), EpochCoordinator::Phase::kReadyToCommit);
  ASSERT_TRUE(coordinator_.Commit(2).ok());
  coordinator_.OnAgentJoined("b");
  EXPECT_EQ(coordinator_.Poll(3), EpochCoordinator::Phase::kCommitted);
}

}  // namespace
}  // namespace grace
