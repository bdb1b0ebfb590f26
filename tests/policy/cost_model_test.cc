#include "policy/cost_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

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
  const LayerRouting routing = UniformRouting(row, 4, topo);
  // From rank 0: rank 1 or rank 2 with probability 1/2 each.
  const LayerCost c = EvaluateLayerOnTokens(OneToken({0}, 0), routing, topo, SmallParams());
  EXPECT_DOUBLE_EQ(c.remote_sends_per_token, 1);
  EXPECT_DOUBLE_EQ(c.cross_node_sends_per_token, 0.5);
  EXPECT_EQ(c.rank_load, (std::vector<double>{0, 0.5, 0.5, 0}));
}

TEST(CostModel, TokensAreScaledToTheLoadTheyStandFor) {
  const Topology topo = SmallTopology();
  const LayerRouting routing = UniformRouting(kOnePerRank, 4, topo);
  // Two tokens on rank 0 and 3, each using experts 1 and 3.
  LayerTokens one;
  one.top_k = 2;
  one.expert_ids = {1, 3, 1, 3};
  one.home_rank = {0, 3};
  LayerStats step;
  step.top_k = 2;
  step.load = {0, 2, 0, 2};
  step.tokens = one;
  const LayerCost exact = EvaluateLayer(step, routing, topo, SmallParams());
  EXPECT_DOUBLE_EQ(exact.layer_ms,
                   EvaluateLayerOnTokens(one, routing, topo, SmallParams()).layer_ms);
  // The same load with the tokens of two intervals (a forecast of one step): the same time.
  LayerStats forecast = step;
  forecast.tokens->expert_ids = {1, 3, 1, 3, 1, 3, 1, 3};
  forecast.tokens->home_rank = {0, 3, 0, 3};
  const LayerCost scaled = EvaluateLayer(forecast, routing, topo, SmallParams());
  EXPECT_NEAR(scaled.layer_ms, exact.layer_ms, 1e-12);
  EXPECT_EQ(scaled.rank_load, exact.rank_load);
  EXPECT_GT(EvaluateLayerOnTokens(*forecast.tokens, routing, topo, SmallParams()).layer_ms,
            1.5 * exact.layer_ms);
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

// The expected traffic home by home, by its definition: TrafficExpected computes the same per
// view of each expert.
LayerTraffic ExpectedHomeByHome(std::span<const double> load, int top_k,
                                const LayerRouting& routing, const Topology& topo) {
  LayerTraffic traffic = EmptyTraffic(topo);
  double total = 0;
  for (double x : load) total += x;
  traffic.tokens = total / top_k;
  const double per_rank = traffic.tokens / topo.ranks();
  for (RankId h = 0; h < topo.ranks(); ++h) {
    std::vector<double> gpu_miss(topo.ranks(), 1.0), node_miss(topo.nodes, 1.0);
    for (ExpertId e = 0; e < static_cast<ExpertId>(load.size()); ++e) {
      if (load[e] <= 0) continue;
      const double use = std::min(1.0, load[e] / traffic.tokens);
      std::span<const SlotId> slots = routing.Replicas(e);
      std::span<const double> p = routing.Probabilities(h, e);
      std::vector<double> node_sum(topo.nodes, 0.0);
      for (size_t i = 0; i < slots.size(); ++i) {
        const RankId g = topo.RankOfSlot(slots[i]);
        gpu_miss[g] *= 1.0 - use * p[i];
        node_sum[topo.NodeOfRank(g)] += p[i];
        traffic.rank_load[g] += per_rank * use * p[i];
      }
      for (NodeId n = 0; n < topo.nodes; ++n)
        node_miss[n] *= 1.0 - use * std::min(1.0, node_sum[n]);
    }
    for (RankId g = 0; g < topo.ranks(); ++g) {
      AddGpuSend(topo, h, g, per_rank * (1.0 - gpu_miss[g]), &traffic);
    }
    for (NodeId n = 0; n < topo.nodes; ++n) {
      AddNodeSend(topo, h, n, per_rank * (1.0 - node_miss[n]), &traffic);
    }
  }
  return traffic;
}

void ExpectSameTraffic(const LayerTraffic& a, const LayerTraffic& b) {
  auto near = [](const std::vector<double>& x, const std::vector<double>& y) {
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], 1e-9 * (1 + std::abs(y[i])));
  };
  EXPECT_NEAR(a.tokens, b.tokens, 1e-9);
  EXPECT_NEAR(a.remote_sends, b.remote_sends, 1e-9 * b.remote_sends);
  EXPECT_NEAR(a.cross_node_sends, b.cross_node_sends, 1e-9 * b.cross_node_sends);
  near(a.rank_load, b.rank_load);
  near(a.intra_send, b.intra_send);
  near(a.intra_recv, b.intra_recv);
  near(a.inter_out, b.inter_out);
  near(a.inter_in, b.inter_in);
}

TEST(CostModel, ExpectedTrafficPerViewMatchesHomeByHome) {
  Topology topo;
  topo.nodes = 4;
  topo.gpus_per_node = 3;
  topo.slots_per_gpu = 3;
  const int experts = 20;
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    // Every expert once, the other slots random experts or empty; some loads zero, one expert
    // used by every token.
    std::vector<ExpertId> row(topo.total_slots(), kEmptySlot);
    std::vector<SlotId> order(row.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i = 0; i < order.size(); ++i) {
      if (i < static_cast<size_t>(experts)) {
        row[order[i]] = static_cast<ExpertId>(i);
      } else if (rng() % 4 != 0) {
        row[order[i]] = static_cast<ExpertId>(rng() % experts);
      }
    }
    std::vector<double> load(experts);
    for (double& x : load) x = rng() % 5 == 0 ? 0.0 : 1.0 + rng() % 100;
    load[trial % experts] = 1e6;
    const int top_k = 4;
    for (const LayerRouting& routing :
         {LocalityRouting(row, load, topo), UniformRouting(row, experts, topo)}) {
      ExpectSameTraffic(TrafficExpected(load, top_k, routing, topo),
                        ExpectedHomeByHome(load, top_k, routing, topo));
    }
  }
}

}  // namespace
}  // namespace grace
