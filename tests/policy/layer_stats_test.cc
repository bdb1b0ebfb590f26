#include "policy/layer_stats.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

Trace TwoLayerTokenTrace() {
  Trace t;
  t.info.num_experts = 4;
  t.info.top_k = 2;
  t.info.layer_ids = {3, 5};
  TraceStep step;
  step.tokens.num_tokens = 3;
  // layer 3: {0,1} {0,1} {2,3}; layer 5: {1,2} {1,3} {0,2}
  step.tokens.expert_ids = {0, 1, 0, 1, 2, 3, 1, 2, 1, 3, 0, 2};
  t.steps.push_back(step);
  return t;
}

TEST(LayerStats, CountsLoadAffinityAndTokens) {
  StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(TwoLayerTokenTrace());
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 2u);
  const LayerStats& l3 = (*stats)[0];
  EXPECT_EQ(l3.layer_id, 3);
  EXPECT_EQ(l3.load, (std::vector<double>{2, 2, 1, 1}));
  EXPECT_DOUBLE_EQ(l3.num_tokens(), 3);
  ASSERT_TRUE(l3.affinity.has_value());
  EXPECT_DOUBLE_EQ(l3.affinity->at(0, 1), 2);
  EXPECT_DOUBLE_EQ(l3.affinity->at(1, 0), 2);
  EXPECT_DOUBLE_EQ(l3.affinity->at(2, 3), 1);
  EXPECT_DOUBLE_EQ(l3.affinity->at(0, 2), 0);
  ASSERT_TRUE(l3.tokens.has_value());
  EXPECT_EQ(l3.tokens->num_tokens(), 3);
  EXPECT_EQ(l3.tokens->HomeRank(2, 4), 0);  // block of 16
  const LayerStats& l5 = (*stats)[1];
  EXPECT_EQ(l5.load, (std::vector<double>{1, 2, 2, 1}));
  EXPECT_DOUBLE_EQ(l5.affinity->at(1, 2), 1);
}

TEST(LayerStats, CountOnlyTraceHasLoadsOnly) {
  Trace t;
  t.info.num_experts = 3;
  t.info.layer_ids = {0};
  t.info.kind = TraceKind::kCounts;
  TraceStep step;
  step.kind = TraceKind::kCounts;
  step.counts.counts = {5, 0, 7};
  t.steps.push_back(step);
  StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(t);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)[0].load, (std::vector<double>{5, 0, 7}));
  EXPECT_FALSE((*stats)[0].affinity.has_value());
  EXPECT_FALSE((*stats)[0].tokens.has_value());
}

TEST(AffinityMatrix, DecayScalesCounts) {
  AffinityMatrix a(3);
  const std::vector<ExpertId> token = {0, 2};
  a.AddToken(token);
  a.AddToken(token);
  a.Decay(0.5);
  EXPECT_DOUBLE_EQ(a.at(0, 2), 1);
  EXPECT_DOUBLE_EQ(a.at(2, 0), 1);
  EXPECT_DOUBLE_EQ(a.at(0, 0), 1);
  EXPECT_DOUBLE_EQ(a.at(0, 1), 0);
}

}  // namespace
}  // namespace grace
