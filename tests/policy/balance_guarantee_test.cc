// grace's balance guarantee (policy/grace_policy.h, step 6), as properties: on any loads, the
// plan's hottest GPU is no hotter than under EPLB's plan of the same slots, unless its modeled
// layer time is lower than EPLB's. Generated loads of many shapes, and every layer of
// every count source in the real traces.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "core/trace_import.h"
#include "policy/eplb.h"
#include "policy/grace_policy.h"
#include "tests/testing/real_traces.h"

namespace grace {
namespace {

enum class Skew { kZipfMild, kZipfSteep, kLogNormal, kPareto };

std::vector<double> GeneratedLoad(Skew skew, int experts, double tokens, std::mt19937_64& rng) {
  std::vector<double> w(experts);
  std::lognormal_distribution<double> lognormal(0.0, 1.5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int e = 0; e < experts; ++e) {
    switch (skew) {
      case Skew::kZipfMild: w[e] = 1.0 / std::pow(1.0 + e, 0.6); break;
      case Skew::kZipfSteep: w[e] = 1.0 / std::pow(1.0 + e, 1.2); break;
      case Skew::kLogNormal: w[e] = lognormal(rng); break;
      case Skew::kPareto: w[e] = 1.0 / std::pow(1.0 - u(rng), 1.0 / 1.2); break;
    }
  }
  std::shuffle(w.begin(), w.end(), rng);
  double sum = 0;
  for (double x : w) sum += x;
  for (double& x : w) x = std::round(x / sum * tokens);
  return w;
}

struct Verdict {
  double mine = 0, theirs = 0;
  double mine_ms = 0, theirs_ms = 0;
};

Verdict Judge(const LayerStats& stats, const Topology& topo, const CostParams& params) {
  StatusOr<LayerPlan> plan = GracePolicy().PlanLayer(stats, topo, params);
  StatusOr<LayerPlan> eplb = EplbPolicy().PlanLayer(stats, topo, params);
  EXPECT_TRUE(plan.ok() && eplb.ok());
  if (!plan.ok() || !eplb.ok()) return {};
  EXPECT_FALSE(plan->choice.empty());
  const LayerCost a = EvaluateLayer(stats, plan->routing, topo, params);
  const LayerCost b = EvaluateLayer(stats, eplb->routing, topo, params);
  return {a.imbalance, b.imbalance, a.layer_ms, b.layer_ms};
}

// Generated loads of many shapes: hotter than EPLB only for a faster modeled layer.
TEST(BalanceGuarantee, GeneratedLoadsHotterThanEplbOnlyWhenFaster) {
  std::mt19937_64 rng(2026);
  int cases = 0, hotter = 0;
  for (Skew skew : {Skew::kZipfMild, Skew::kZipfSteep, Skew::kLogNormal, Skew::kPareto}) {
    for (int experts : {32, 128, 512}) {
      for (int top_k : {1, 8}) {
        for (double ratio : {1.0, 1.3, 2.0}) {
          for (int nodes : {1, 4, 16}) {
            Topology topo;
            topo.nodes = nodes;
            topo.gpus_per_node = 4;
            topo.slots_per_gpu =
                std::max(1, static_cast<int>(std::ceil(experts * ratio / topo.ranks())));
            LayerStats stats;
            stats.top_k = top_k;
            stats.load = GeneratedLoad(skew, experts, 8192.0 * top_k, rng);
            const Verdict v = Judge(stats, topo, CostParams{});
            if (v.mine > v.theirs * (1 + 1e-9)) {
              EXPECT_LT(v.mine_ms, v.theirs_ms)
                  << "skew " << static_cast<int>(skew) << ", " << experts << " experts, top-"
                  << top_k << ", " << topo.ToString();
              ++hotter;
            }
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 216);
  std::printf("%d cases, %d hotter than EPLB (each with a faster modeled time)\n", cases, hotter);
}

// With tokens grace may run hotter than EPLB, but only for a faster modeled layer.
TEST(BalanceGuarantee, GeneratedTokensHotterOnlyWhenFaster) {
  std::mt19937_64 rng(7);
  for (int experts : {32, 64}) {
    for (int top_k : {2, 8}) {
      for (int nodes : {1, 2}) {
        Topology topo;
        topo.nodes = nodes;
        topo.gpus_per_node = 4;
        topo.slots_per_gpu = experts * 5 / 4 / topo.ranks();
        // Tokens from groups of 8 experts with Zipf-skewed popularity.
        const std::vector<double> group_weight =
            GeneratedLoad(Skew::kZipfSteep, experts / 8, 1e6, rng);
        std::discrete_distribution<int> group(group_weight.begin(), group_weight.end());
        LayerStats stats;
        stats.top_k = top_k;
        stats.load.assign(experts, 0.0);
        LayerTokens tokens;
        tokens.top_k = top_k;
        for (int t = 0; t < 1024; ++t) {
          const int g = group(rng);
          std::vector<ExpertId> members(8);
          for (int i = 0; i < 8; ++i) members[i] = static_cast<ExpertId>(g * 8 + i);
          std::shuffle(members.begin(), members.end(), rng);
          for (int k = 0; k < top_k; ++k) {
            tokens.expert_ids.push_back(members[k]);
            stats.load[members[k]] += 1;
          }
        }
        stats.tokens = std::move(tokens);
        const Verdict v = Judge(stats, topo, CostParams{});
        if (v.mine > v.theirs * (1 + 1e-9)) {
          EXPECT_LT(v.mine_ms, v.theirs_ms)
              << experts << " experts, top-" << top_k << ", " << topo.ToString();
        }
      }
    }
  }
}

// Every layer of every count source in the real traces, at the topologies of plan_bench (25 Gb/s
// between nodes): hotter than EPLB only for a faster modeled layer.
TEST(BalanceGuarantee, RealCountSourcesHotterOnlyWhenFaster) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || entry.path().extension() != ".json") continue;
    if (name.find("crosslayer") != std::string::npos) continue;  // pairs, not loads
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  int sources = 0, layers = 0, hotter = 0;
  for (const std::string& file : files) {
    StatusOr<Trace> trace = ImportTraces({file});
    if (!trace.ok() || trace->info.kind != TraceKind::kCounts) continue;
    StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(*trace);
    ASSERT_TRUE(stats.ok()) << file;
    ++sources;
    for (const Topology& topo :
         {Topology{12, 8, 3}, Topology{4, 8, 9}, Topology{2, 4, 8}, Topology{2, 2, 16}}) {
      for (const LayerStats& layer : *stats) {
        if (layer.total_load() <= 0 || layer.num_experts() > topo.total_slots()) continue;
        const Verdict v = Judge(layer, topo, CostParams{});
        if (v.mine > v.theirs * (1 + 1e-9)) {
          EXPECT_LT(v.mine_ms, v.theirs_ms)
              << file << " layer " << layer.layer_id << " at " << topo.ToString();
          ++hotter;
        }
        ++layers;
      }
    }
  }
  EXPECT_GE(sources, 20);
  EXPECT_GT(layers, 1000);
  std::printf("%d sources, %d layer plans, %d hotter than EPLB (each with a faster modeled time)\n",
              sources, layers, hotter);
}

}  // namespace
}  // namespace grace
