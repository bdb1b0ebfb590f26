// SampleTopKTokens: k distinct experts per token, reproducible for a seed, frequencies that
// follow the weights (closely on mild distributions, flattened at the top on hot ones).
#include "policy/load_sampling.h"

#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace grace {
namespace {

std::vector<ExpertId> Sample(const std::vector<double>& weights, int top_k, int tokens,
                             uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<ExpertId> ids(static_cast<size_t>(tokens) * top_k);
  SampleTopKTokens(weights, top_k, tokens, rng, ids);
  return ids;
}

// Per expert, the share of all (token, choice) assignments.
std::vector<double> Shares(const std::vector<ExpertId>& ids, int experts) {
  std::vector<double> share(experts, 0.0);
  for (ExpertId e : ids) share[e] += 1.0 / static_cast<double>(ids.size());
  return share;
}

double L1(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += std::abs(a[i] - b[i]);
  return d;
}

TEST(SampleTopKTokens, GivesEachTokenKDistinctExpertsOfPositiveWeight) {
  std::vector<double> weights(64, 0.0);
  for (int e = 0; e < 40; ++e) weights[e] = 1.0 / (e + 1.0);  // steep, and 24 experts unused
  weights[0] = 50.0;  // one expert nearly every token takes first
  const int k = 8, tokens = 5000;
  const std::vector<ExpertId> ids = Sample(weights, k, tokens, 7);
  for (int t = 0; t < tokens; ++t) {
    const std::set<ExpertId> distinct(ids.begin() + t * k, ids.begin() + (t + 1) * k);
    ASSERT_EQ(distinct.size(), static_cast<size_t>(k)) << "token " << t;
    for (ExpertId e : distinct) {
      ASSERT_GE(e, 0);
      ASSERT_LT(e, 40) << "token " << t << " took expert " << e << " of weight 0";
    }
  }
}

TEST(SampleTopKTokens, FillsWithUnweightedExpertsWhenTooFewHaveWeight) {
  std::vector<double> weights(16, 0.0);
  weights[3] = 1, weights[9] = 2, weights[12] = NAN;  // NaN counts as 0
  const int k = 5;
  const std::vector<ExpertId> ids = Sample(weights, k, 200, 3);
  for (int t = 0; t < 200; ++t) {
    const std::set<ExpertId> distinct(ids.begin() + t * k, ids.begin() + (t + 1) * k);
    ASSERT_EQ(distinct.size(), static_cast<size_t>(k));
    EXPECT_TRUE(distinct.count(3) && distinct.count(9)) << "token " << t;
  }
}

TEST(SampleTopKTokens, IsReproducibleForASeed) {
  std::vector<double> weights(64);
  for (int e = 0; e < 64; ++e) weights[e] = 1.0 + (e % 7);
  EXPECT_EQ(Sample(weights, 8, 1000, 42), Sample(weights, 8, 1000, 42));
  EXPECT_NE(Sample(weights, 8, 1000, 42), Sample(weights, 8, 1000, 43));
}

TEST(SampleTopKTokens, FollowsTheWeightsOfAMildDistribution) {
  // Shares from 1 to 3 times the smallest: the hottest is 8 x 2.4% = 0.19 of a token's choices.
  std::vector<double> weights(64);
  for (int e = 0; e < 64; ++e) weights[e] = 1.0 + 2.0 * e / 63.0;
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::vector<double> source(64);
  for (int e = 0; e < 64; ++e) source[e] = weights[e] / total;
  const std::vector<double> sampled = Shares(Sample(weights, 8, 100000, 5), 64);
  for (int e = 0; e < 64; ++e) {
    EXPECT_NEAR(sampled[e], source[e], 0.06 * source[e]) << "expert " << e;
  }
  EXPECT_LT(L1(sampled, source), 0.03);
}

TEST(SampleTopKTokens, FlattensAnExpertNearOnePerToken) {
  // Expert 0's share is 0.12: a token would need it 0.96 times out of 1; without replacement
  // it is taken by fewer tokens, and the others gain what it loses.
  std::vector<double> weights(64, 0.88 / 63);
  weights[0] = 0.12;
  const std::vector<double> sampled = Shares(Sample(weights, 8, 50000, 11), 64);
  // Exactly: 1 - prod over j < 8 of (0.88 - j w) / (1 - j w), w = 0.88 / 63, is 0.661 of the
  // tokens, a share of 0.0826.
  EXPECT_NEAR(sampled[0], 0.0826, 0.002);
  EXPECT_GT(sampled[1], 0.88 / 63);
}

TEST(MatchTopKShares, GivesTheHotExpertItsShareBack) {
  std::vector<double> shares(64, 0.88 / 63);
  shares[0] = 0.12;
  const std::vector<double> weights = MatchTopKShares(shares, 8);
  EXPECT_GT(weights[0], 0.12);  // the hot expert must weigh more than its share to get it
  const std::vector<double> sampled = Shares(Sample(weights, 8, 50000, 11), 64);
  EXPECT_NEAR(sampled[0], 0.12, 0.002);
  EXPECT_LT(L1(sampled, shares), 0.02);
}

TEST(MatchTopKShares, CapsSharesNoTopKCanReach) {
  // Expert 0 would need 2 of a token's 4 choices: it gets nearly every token, the rest share
  // what is left in proportion.
  std::vector<double> shares = {0.5, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05};
  const std::vector<double> weights = MatchTopKShares(shares, 4);
  const std::vector<ExpertId> ids = Sample(weights, 4, 20000, 2);
  const std::vector<double> sampled = Shares(ids, 7);
  EXPECT_NEAR(sampled[0], 0.995 / 4, 0.003);
  EXPECT_NEAR(sampled[1] / sampled[5], 2.0, 0.15);
  // With no more positive shares than choices, the shares come back untouched.
  EXPECT_EQ(MatchTopKShares(std::vector<double>{3, 1, 0}, 2), (std::vector<double>{3, 1, 0}));
}

TEST(JitterWeights, KeepsTheMeanOfEveryWeight) {
  const std::vector<double> weights = {1.0, 4.0};
  std::vector<double> out(2), sum(2, 0.0);
  std::mt19937_64 rng(1);
  const int rounds = 20000;
  for (int i = 0; i < rounds; ++i) {
    JitterWeights(weights, 0.3, rng, out);
    for (int e = 0; e < 2; ++e) sum[e] += out[e] / rounds;
  }
  EXPECT_NEAR(sum[0], 1.0, 0.02);
  EXPECT_NEAR(sum[1], 4.0, 0.08);
}

}  // namespace
}  // namespace grace
