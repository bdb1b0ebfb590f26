#include "agent/epoch_agreement.h"

#include <gtest/gtest.h>

#include <vector>

namespace grace {
namespace {

TEST(EpochAgreementTest, ServesTheCommonEpochUntilSomeRankKnowsTheCommit) {
  std::vector<EpochClaim> claims(4, EpochClaim{3, 0, kNoSwitchStep});
  EXPECT_EQ(AgreedEpoch(claims, 100), 3u);
  claims[2] = {3, 4, 120};  // only rank 2 got COMMIT(4 at 120)
  EXPECT_EQ(AgreedEpoch(claims, 119), 3u);
  EXPECT_EQ(AgreedEpoch(claims, 120), 4u);  // every rank switches at 120, COMMIT or not
}

TEST(EpochAgreementTest, ALateCommitMovesTheSwitchForEveryRank) {
  // Nobody had the commit at its switch step 50; at step 57 rank 0 has it: all switch at 57.
  std::vector<EpochClaim> claims(3, EpochClaim{7, 0, kNoSwitchStep});
  EXPECT_EQ(AgreedEpoch(claims, 57), 7u);
  claims[0] = {7, 8, 50};
  EXPECT_EQ(AgreedEpoch(claims, 57), 8u);
}

TEST(EpochAgreementTest, ARankAlreadyOnTheNewEpochPullsTheOthers) {
  // A rank restarted at the committed epoch 5 while the others still serve 4.
  std::vector<EpochClaim> claims = {{4, 0, kNoSwitchStep}, {5, 0, kNoSwitchStep}};
  EXPECT_EQ(AgreedEpoch(claims, 10), 5u);
}

}  // namespace
}  // namespace grace
