#include "policy/affinity_sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include "core/trace_import.h"
#include "policy/eplb.h"
#include "policy/grace_policy.h"
#include "policy/locality_routing.h"
#include "tests/testing/real_traces.h"

namespace grace {
namespace {

// Experts {0..3}, {4..7}, ... fire together as groups of `group`: every token of a group
// counts once for each pair in it, so a pair's count is the group's load.
AffinityMatrix GroupAffinity(std::span<const double> load, int group) {
  const int experts = static_cast<int>(load.size());
  AffinityMatrix a(experts);
  for (ExpertId x = 0; x < experts; ++x) {
    for (ExpertId y = x + 1; y < experts; ++y) {
      if (x / group == y / group) a.AddPair(x, y, load[x]);
    }
  }
  return a;
}

TEST(AffinitySampling, TokensKeepGroupsTogetherAndMatchTheLoads) {
  const int experts = 16;
  std::vector<double> load(experts);
  for (ExpertId e = 0; e < experts; ++e) load[e] = 100.0 * (1 + e % 5);
  // Each group's load is its members' mean: a group fires as one.
  for (int g = 0; g < 4; ++g) {
    double sum = 0;
    for (int i = 0; i < 4; ++i) sum += load[4 * g + i];
    for (int i = 0; i < 4; ++i) load[4 * g + i] = sum / 4;
  }
  AffinitySamplingOptions o;
  o.num_tokens = 2000;
  o.smoothing = 0.0;
  const LayerTokens t = SampleTokensFromAffinity(load, GroupAffinity(load, 4), 4, o);
  ASSERT_EQ(t.top_k, 4);
  ASSERT_EQ(t.num_tokens(), 2000);
  std::vector<double> seen(experts, 0.0);
  for (int i = 0; i < t.num_tokens(); ++i) {
    std::set<int> groups, ids;
    for (int k = 0; k < 4; ++k) {
      const ExpertId e = t.expert_ids[i * 4 + k];
      groups.insert(e / 4);
      ids.insert(e);
      seen[e] += 1;
    }
    EXPECT_EQ(groups.size(), 1u) << "token " << i << " mixes groups";
    EXPECT_EQ(ids.size(), 4u) << "token " << i << " repeats an expert";
  }
  double total = 0;
  for (double v : load) total += v;
  for (ExpertId e = 0; e < experts; ++e) {
    EXPECT_NEAR(seen[e] / (2000.0 * 4), load[e] / total, 0.02) << "expert " << e;
  }
}

TEST(AffinitySampling, FollowsSkewedLoadsWithIndependentPairs) {
  // Zipf loads (the hottest expert in 56% of tokens), pairs as independent experts would give them
  // (count of a and b ~ p_a p_b).
  const int experts = 64;
  const int top_k = 4;
  std::vector<double> load(experts);
  double total = 0;
  for (ExpertId e = 0; e < experts; ++e) total += load[e] = 1000.0 / std::pow(1.0 + e, 0.8);
  AffinityMatrix a(experts);
  for (ExpertId x = 0; x < experts; ++x) {
    for (ExpertId y = x + 1; y < experts; ++y) a.AddPair(x, y, load[x] * load[y] / total);
  }
  AffinitySamplingOptions o;
  o.num_tokens = 4000;
  const LayerTokens t = SampleTokensFromAffinity(load, a, top_k, o);
  std::vector<double> seen(experts, 0.0);
  for (ExpertId e : t.expert_ids) seen[e] += 1;
  for (ExpertId e = 0; e < experts; ++e) {
    const double want = load[e] / total;
    EXPECT_NEAR(seen[e] / (4000.0 * top_k), want, 0.1 * want + 0.003) << "expert " << e;
  }
}

TEST(AffinitySampling, NothingToDrawFromGivesNoTokens) {
  AffinityMatrix a(4);
  EXPECT_EQ(SampleTokensFromAffinity(std::vector<double>(4, 0.0), a, 2).num_tokens(), 0);
  EXPECT_FALSE(HasPairs(a));
  LayerStats s;
  s.load = {1, 2, 3, 4};
  s.top_k = 2;
  s.affinity = a;
  EXPECT_FALSE(WithAffinityTokens(s).tokens.has_value());  // no pairs: stays load-only
}

// Planning from co-activation alone puts experts that always fire together on one GPU; from
// the loads alone they are spread for balance.
TEST(AffinitySampling, GracePlanFromPairsGroupsExpertsThatFireTogether) {
  const int experts = 16;
  const Topology topo{2, 2, 4};  // 4 GPUs x 4 slots: no spare slot, one group per GPU fits
  LayerStats stats;
  stats.layer_id = 0;
  stats.top_k = 4;
  stats.load.assign(experts, 0.0);
  // Groups interleaved in id order so that contiguous and load-sorted packing split them.
  auto group_of = [](ExpertId e) { return e % 4; };
  AffinityMatrix a(experts);
  for (ExpertId x = 0; x < experts; ++x) {
    stats.load[x] = 1000.0;
    for (ExpertId y = x + 1; y < experts; ++y) {
      if (group_of(x) == group_of(y)) a.AddPair(x, y, 1000.0);
    }
  }
  stats.affinity = a;
  StatusOr<LayerPlan> plan = GracePolicy().PlanLayer(stats, topo, CostParams{});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  for (RankId g = 0; g < topo.ranks(); ++g) {
    std::set<int> groups;
    for (SlotId s = g * topo.slots_per_gpu; s < (g + 1) * topo.slots_per_gpu; ++s) {
      groups.insert(group_of(plan->row[s]));
    }
    EXPECT_EQ(groups.size(), 1u) << "GPU " << g << " holds experts of " << groups.size()
                                 << " groups";
  }
}

// The referee: on real Qwen1.5-MoE tokens, a plan made from their co-activation pairs alone
// (no tokens) is judged on the real tokens. It must keep most of the token plan's traffic cut
// against EPLB; a load-only plan sends about as much as EPLB.
TEST(AffinitySampling, PlanFromRealPairsCutsRealTrafficLikeTheTokenPlan) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  StatusOr<Trace> trace = ImportTraces({dir + "/qwen1.5-moe-a2.7b-gsm8k/moe_layer0.jsonl"});
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(*trace);
  ASSERT_TRUE(stats.ok());
  const LayerStats& full = (*stats)[0];
  ASSERT_TRUE(full.tokens && full.affinity);
  LayerStats pairs_only = full;
  pairs_only.tokens.reset();
  LayerStats loads_only = pairs_only;
  loads_only.affinity.reset();

  const Topology topo{2, 4, 8};
  const CostParams params;
  auto remote = [&](const LayerPlan& p) {
    return EvaluateLayerOnTokens(*full.tokens, p.routing, topo, params).remote_sends_per_token;
  };
  StatusOr<LayerPlan> from_tokens = GracePolicy().PlanLayer(full, topo, params);
  StatusOr<LayerPlan> from_pairs = GracePolicy().PlanLayer(pairs_only, topo, params);
  StatusOr<LayerPlan> from_loads = GracePolicy().PlanLayer(loads_only, topo, params);
  StatusOr<LayerPlan> eplb = EplbPolicy().PlanLayer(full, topo, params);
  ASSERT_TRUE(from_tokens.ok() && from_pairs.ok() && from_loads.ok() && eplb.ok());
  const double base = remote(*eplb);
  const double cut_tokens = base - remote(*from_tokens);
  const double cut_pairs = base - remote(*from_pairs);
  EXPECT_GT(cut_tokens, 0.1 * base);
  EXPECT_GT(cut_pairs, 0.7 * cut_tokens)
      << "pairs " << remote(*from_pairs) << " tokens " << remote(*from_tokens) << " eplb " << base;
  EXPECT_GT(remote(*from_loads), remote(*from_pairs) + 0.1 * base);
  const LayerCost c = EvaluateLayerOnTokens(*full.tokens, from_pairs->routing, topo, params);
  EXPECT_LE(c.imbalance, 1.12);
}

}  // namespace
}  // namespace grace
