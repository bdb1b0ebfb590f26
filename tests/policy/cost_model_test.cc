#include "policy/cost_model.h"

#include <gtest/gtest.h>

#include "policy/locality_routing.h"

namespace grace {
namespace {

// 2 nodes x 2 GPUs; round numbers: a token is 2048 bytes, NVLink 2e9 B/s, NIC 1e9 B/s, no
// latency, 1 TFLOP/s, 6.144 MFLOP per (token, expert).
Topology SmallTopology() {
  Topology t;
  t.nodes = 2;
  t.gpus_per_node = 2;
  t.slots_per_gpu = 2;
  t.intra_node_gbps = 16;
  t.inter_node_gbps = 8;
  t.intra_node_latency_us = 0;
  t.inter_node_latency_us = 0;
  return t;
}

CostParams SmallParams() {
  CostParams p;
  p.hidden_size = 1024;
  p.bytes_per_element = 2;
  p.expert_ffn_size = 1000;
  p.gpu_tflops = 1;
  p.compute_efficiency = 1;
  return p;
}

LayerTokens OneToken(std::vector<ExpertId> experts, RankId home) {
  LayerTokens t;
  t.top_k = static_cast<int>(experts.size());
  t.expert_ids = std::move(experts);
  t.home_rank = {home};
  return t;
}

const std::vector<ExpertId> kOnePerRank = {0, kEmptySlot, 1, kEmptySlot,
                                           2, kEmptySlot, 3, kEmptySlot};

TEST(CostModel, HandComputedTokenOnThreeRemoteGpus) {
  const Topology topo = SmallTopology();
  const LayerRouting routing = LocalityRouting(kOnePerRank, std::vector<double>(4, 1.0), topo);
  // Home rank 0 (node 0); experts on ranks 1 (node 0), 2 and 3 (node 1).
  const LayerCost c = EvaluateLayerOnTokens(OneToken({1, 2, 3}, 0), routing, topo, SmallParams());
  EXPECT_DOUBLE_EQ(c.remote_sends_per_token, 3);
  EXPECT_DOUBLE_EQ(c.cross_node_sends_per_token, 1);  // node 1 once, not twice
  EXPECT_EQ(c.rank_load, (std::vector<double>{0, 1, 1, 1}));
  EXPECT_NEAR(c.imbalance, 1.0 / 0.75, 1e-12);
  // Compute: 1 pair x 6.144e6 FLOP / 1e12 FLOP/s = 0.006144 ms.
  EXPECT_NEAR(c.compute_ms, 0.006144, 1e-12);
  // NVLink: rank 0 -> 1, and rank 2 (the peer of rank 0 on node 1) -> 3: one token each,
  // 2048 B / 2e9 B/s. NIC: node 0 -> node 1 once, 2048 B / 1e9 B/s.
  EXPECT_NEAR(c.intra_ms, 0.001024, 1e-12);
  EXPECT_NEAR(c.inter_ms, 0.002048, 1e-12);
  EXPECT_NEAR(c.layer_ms, 0.006144 + 2 * (0.001024 + 0.002048), 1e-12);
}

TEST(CostModel, TwoExpertsOnOneRemoteGpuAreSentOnce) {
  const Topology topo = SmallTopology();
  const std::vector<ExpertId> row = {0, 1, kEmptySlot, kEmptySlot, 2, 3, kEmptySlot, kEmptySlot};
  const LayerRouting routing = LocalityRouting(row, std::vector<double>(4, 1.0), topo);
  const LayerCost c = EvaluateLayerOnTokens(OneToken({2, 3}, 0), routing, topo, SmallParams());
  EXPECT_DOUBLE_EQ(c.remote_sends_per_token, 1);
  EXPECT_DOUBLE_EQ(c.cross_node_sends_per_token, 1);
  EXPECT_EQ(c.rank_load, (std::vector<double>{0, 0, 2, 0}));
  EXPECT_DOUBLE_EQ(c.intra_ms, 0);  // lands on the peer GPU: nothing to forward
  EXPECT_NEAR(c.inter_ms, 0.002048, 1e-12);
}

TEST(CostModel, LocalExpertsCostNoTraffic) {
  const Topology topo = SmallTopology();
  const LayerRouting routing = LocalityRouting(kOnePerRank, std::vector<double>(4, 1.0), topo);
  const LayerCost c = EvaluateLayerOnTokens(OneToken({2}, 2), routing, topo, SmallParams());
  EXPECT_DOUBLE_EQ(c.remote_sends_per_token, 0);
  EXPECT_DOUBLE_EQ(c.layer_ms, c.compute_ms);
}

TEST(CostModel, SplitRoutingCountsExpectedSends) {
  const Topology topo = SmallTopology();
  // Expert 0 on ranks 1 (node 0) and 2 (node 1); a token on rank 3 sees rank 2 as same-node.
  const std::vector<ExpertId> row = {1, kEmptySlot, 0, kEmptySlot, 0, kEmptySlot, 2, 3};
  LayerRouting routing(row, 4, topo.ranks());
  for (RankId r = 0; r < topo.ranks(); ++r) {
    for (ExpertId e = 0; e < 4; ++e) {
      auto p = routing.MutableProbabilities(r, e);
      for (double& x : p) x = 1.0 / p.size();
    }
  }
  // From rank 0: rank 1 or rank 2 with probability 1/2 each.
  const LayerCost c = EvaluateLayerOnTokens(OneToken({0}, 0), routing, topo, SmallParams());
  EXPECT_DOUBLE_EQ(c.remote_sends_per_token, 1);
  EXPECT_DOUBLE_EQ(c.cross_node_sends_per_token, 0.5);
  EXPECT_EQ(c.rank_load, (std::vector<double>{0, 0.5, 0.5, 0}));
}

TEST(CostModel, ExpectedFromLoadsMatchesHandComputation) {
  Topology topo = SmallTopology();
  topo.nodes = 1;
  // Experts 0 and 1 on ranks 0 and 1, top-1, equal loads: 4 tokens, half of each rank's tokens
  // go to the other rank.
  const std::vector<ExpertId> row = {0, kEmptySlot, 1, kEmptySlot};
  const std::vector<double> load = {2, 2};
  const LayerRouting routing = LocalityRouting(row, load, topo);
  const LayerCost c = EvaluateLayerExpected(load, 1, routing, topo, SmallParams());
  EXPECT_DOUBLE_EQ(c.tokens, 4);
  EXPECT_DOUBLE_EQ(c.remote_sends_per_token, 0.5);
  EXPECT_DOUBLE_EQ(c.cross_node_sends_per_token, 0);
  EXPECT_EQ(c.rank_load, (std::vector<double>{2, 2}));
}

TEST(CostModel, LatencyIsPaidOncePerLinkClass) {
  Topology topo = SmallTopology();
  topo.inter_node_latency_us = 10;
  topo.intra_node_latency_us = 3;
  const LayerRouting routing = LocalityRouting(kOnePerRank, std::vector<double>(4, 1.0), topo);
  const LayerCost c = EvaluateLayerOnTokens(OneToken({1, 2, 3}, 0), routing, topo, SmallParams());
  EXPECT_NEAR(c.intra_ms, 0.003 + 0.001024, 1e-12);
  EXPECT_NEAR(c.inter_ms, 0.010 + 0.002048, 1e-12);
}

}  // namespace
}  // namespace grace
