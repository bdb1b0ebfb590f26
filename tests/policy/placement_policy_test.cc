#include "policy/placement_policy.h"

#include <gtest/gtest.h>

#include <string>

#include "core/synthetic_trace.h"
#include "core/trace_import.h"
#include "policy/eplb.h"
#include "policy/grace_policy.h"
#include "policy/locality_routing.h"
#include "policy/policy_comparison.h"
#include "tests/testing/real_traces.h"

namespace grace {
namespace {

std::vector<LayerStats> SyntheticStats(int experts, int top_k, bool counts_only) {
  SyntheticTraceOptions o;
  o.experts = experts;
  o.top_k = top_k;
  o.layers = 2;
  o.steps = 4;
  o.tokens_per_step = 256;
  o.seed = 7;
  StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(SynthesizeTrace(o));
  EXPECT_TRUE(stats.ok());
  if (counts_only) {
    for (LayerStats& s : *stats) {
      s.tokens.reset();
      s.affinity.reset();
    }
  }
  return *stats;
}

// The properties every policy's plan must have, whatever the input.
void ExpectValidPlan(const PlacementPlan& plan, const Topology& topo,
                     std::span<const LayerStats> layers) {
  ASSERT_TRUE(plan.placement.Validate(topo).ok());  // every expert has a replica
  for (int li = 0; li < plan.placement.num_layers(); ++li) {
    const auto& row = plan.placement.physical_to_logical[li];
    ASSERT_EQ(static_cast<int>(row.size()), topo.total_slots());  // slot budget
    const LayerRouting& routing = plan.routings[li];
    for (RankId r = 0; r < topo.ranks(); ++r) {
      for (ExpertId e = 0; e < layers[li].num_experts(); ++e) {
        auto slots = routing.Replicas(e);
        auto p = routing.Probabilities(r, e);
        double sum = 0;
        for (size_t i = 0; i < slots.size(); ++i) {
          EXPECT_EQ(row[slots[i]], e);  // only replicas of its own expert
          EXPECT_GE(p[i], 0);
          sum += p[i];
        }
        EXPECT_NEAR(sum, 1.0, 1e-9) << "rank " << r << " expert " << e;
      }
    }
  }
}

class EveryPolicy : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryPolicy, TokenInputGivesAValidPlan) {
  const Topology topo{2, 4, 9};
  const std::vector<LayerStats> layers = SyntheticStats(64, 4, false);
  auto policy = MakePlacementPolicy(GetParam());
  ASSERT_TRUE(policy.ok());
  StatusOr<PlacementPlan> plan = PlanAllLayers(**policy, layers, topo, CostParams{});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ExpectValidPlan(*plan, topo, layers);
}

TEST_P(EveryPolicy, CountInputGivesAValidPlan) {
  const Topology topo{3, 4, 6};
  const std::vector<LayerStats> layers = SyntheticStats(64, 8, true);
  auto policy = MakePlacementPolicy(GetParam());
  ASSERT_TRUE(policy.ok());
  StatusOr<PlacementPlan> plan = PlanAllLayers(**policy, layers, topo, CostParams{});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ExpectValidPlan(*plan, topo, layers);
}

INSTANTIATE_TEST_SUITE_P(Policies, EveryPolicy,
                         ::testing::Values("grace", "eplb", "contiguous", "affinity"));

TEST(PlacementPolicy, GraceRoutingFitsARoutingTable) {
  const Topology topo{2, 2, 17};
  const std::vector<LayerStats> layers = SyntheticStats(64, 4, false);
  StatusOr<PlacementPlan> plan = PlanAllLayers(GracePolicy(), layers, topo, CostParams{});
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(BuildRoutingTable(1, topo, plan->placement, plan->routings).ok());
}

TEST(PlacementPolicy, TooManyExpertsIsAnError) {
  const std::vector<LayerStats> layers = SyntheticStats(64, 4, true);
  StatusOr<PlacementPlan> plan = PlanAllLayers(GracePolicy(), layers, Topology{1, 2, 8}, {});
  EXPECT_FALSE(plan.ok());
}

TEST(PlacementPolicy, UnknownPolicyIsAnError) {
  EXPECT_FALSE(MakePlacementPolicy("x").ok());
}

TEST(PlacementPolicy, GraceBeatsEplbOnClusteredTokens) {
  const Topology topo{2, 4, 9};
  const std::vector<LayerStats> layers = SyntheticStats(64, 4, false);
  const std::vector<std::string> names = {"grace", "eplb"};
  auto reports = ComparePolicies(layers, topo, CostParams{}, names);
  ASSERT_TRUE(reports.ok());
  EXPECT_LT((*reports)[0].cross_node_sends_ratio, 1.0);
  EXPECT_GT((*reports)[0].speedup, 1.0);
}

// Mixtral-8x7B's domain counts (8 experts, top-2) on 2 nodes x 4 GPUs x 3 slots over a slow
// network: with load alone, every expert gets a copy on every node (24 slots hold 16 such
// copies), so no token crosses nodes. Replicas for balance alone left layer 15's coldest expert on
// one node, and its cross-node tokens cost the layer 75% more time.
TEST(PlacementPolicy, GraceCoversEveryNodeWhenTheNetworkIsSlow) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  for (const char* domain : {"arxiv", "book", "c4"}) {
    StatusOr<Trace> trace = ImportTraces(
        {dir + "/olmoe-and-mixtral-domain-counts/mistral__expert_counts__" + domain + ".json"});
    ASSERT_TRUE(trace.ok()) << trace.status().ToString();
    StatusOr<std::vector<LayerStats>> layers = LayerStatsFromTrace(*trace);
    ASSERT_TRUE(layers.ok());
    Topology topo{2, 4, 3};
    topo.inter_node_gbps = 25;
    const GracePolicy grace;
    for (const LayerStats& layer : *layers) {
      StatusOr<LayerPlan> plan = grace.PlanLayer(layer, topo, CostParams{});
      ASSERT_TRUE(plan.ok()) << plan.status().ToString();
      const LayerCost cost = EvaluateLayer(layer, plan->routing, topo, CostParams{});
      EXPECT_EQ(cost.cross_node_sends_per_token, 0.0) << domain << " layer " << layer.layer_id;
    }
  }
}

// From loads alone, grace trades no balance for traffic against EPLB's packing: on DeepSeek-V3's
// prefill statistics over a slow network, where the modeled time alone would take plans with the
// hottest GPU up to 1.67x the mean for less cross-node traffic, every layer's hottest GPU is
// no hotter than under EPLB's packing (both with locality routing).
TEST(PlacementPolicy, GraceFromLoadsBalancesNoWorseThanEplb) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  StatusOr<Trace> trace = ImportTraces({dir + "/deepseek-v3-sglang-stats/prefill_in1024.json"});
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  StatusOr<std::vector<LayerStats>> layers = LayerStatsFromTrace(*trace);
  ASSERT_TRUE(layers.ok());
  Topology topo{12, 8, 3};
  topo.inter_node_gbps = 25;
  CostParams params;
  params.hidden_size = 7168;
  params.expert_ffn_size = 2048;
  const GracePolicy grace;
  for (const LayerStats& layer : *layers) {
    StatusOr<LayerPlan> plan = grace.PlanLayer(layer, topo, params);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    StatusOr<std::vector<std::vector<ExpertId>>> eplb =
        EplbRebalance({layer.load}, topo.total_slots(), 1, topo.nodes, topo.ranks());
    ASSERT_TRUE(eplb.ok());
    const LayerCost mine = EvaluateLayer(layer, plan->routing, topo, params);
    const LayerCost theirs =
        EvaluateLayer(layer, LocalityRouting((*eplb)[0], layer.load, topo), topo, params);
    EXPECT_LE(mine.imbalance, theirs.imbalance * (1 + 1e-9)) << "layer " << layer.layer_id;
  }
}

// The figures on the real Qwen1.5-MoE layers, each planned on its own, against EPLB
// with the same slot budget (bounds: what the method reaches, less a small margin).
class QwenFigures : public ::testing::TestWithParam<Topology> {};

TEST_P(QwenFigures, GraceBeatsEplb) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string q = dir + "/qwen1.5-moe-a2.7b-gsm8k/";
  StatusOr<Trace> trace =
      ImportTraces({q + "moe_layer0.jsonl", q + "moe_layer8.jsonl", q + "moe_layer12.jsonl"});
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  StatusOr<std::vector<LayerStats>> layers = LayerStatsFromTrace(*trace);
  ASSERT_TRUE(layers.ok());
  const std::vector<std::string> names = {"grace", "eplb"};
  auto reports = ComparePolicies(*layers, GetParam(), CostParams{}, names);
  ASSERT_TRUE(reports.ok());
  const PolicyReport& grace = (*reports)[0];
  const PolicyReport& eplb = (*reports)[1];
  EXPECT_LE(grace.cross_node_sends_ratio, 0.80);
  EXPECT_LE(grace.remote_sends_ratio, 0.76);
  EXPECT_LE(grace.worst_imbalance, 1.10);
  EXPECT_GE(grace.speedup, 1.24);
  // Layer 0, the hard one (weak co-activation): better than a plain spectral + swaps + greedy
  // replication prototype (0.84x remote sends, 1.10x modeled speed-up).
  const LayerCost& g0 = grace.layers[0];
  const LayerCost& e0 = eplb.layers[0];
  EXPECT_LE(g0.remote_sends_per_token / e0.remote_sends_per_token, 0.835);
  EXPECT_GE(e0.layer_ms / g0.layer_ms, 1.11);
}

INSTANTIATE_TEST_SUITE_P(Topologies, QwenFigures,
                         ::testing::Values(Topology{2, 4, 8}, Topology{2, 2, 16}));

}  // namespace
}  // namespace grace
