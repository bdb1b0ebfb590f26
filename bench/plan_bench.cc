// plan_bench: the placement figures of the policy issue.
//  1. Qwen1.5-MoE-A2.7B (3 real layers, token-level): grace vs EPLB (and the other baselines)
//     on 2 nodes x 4 GPUs x 8 slots and 2 x 2 x 16: remote and cross-node sends per token,
//     max/mean GPU load, modeled layer time, each layer planned on its own.
//  2. DeepSeek-V3 SGLang stats (58 MoE layers x 256 experts): whole-plan solve time, median of
//     several runs on one thread, grace vs EPLB, with their max/mean GPU load, on 12 x 8 x 3 and
//     4 x 8 x 9.
//  3. Qwen again: grace planned from the co-activation pairs alone (graced's input), judged on
//     the real tokens.
//  4. matrices: grouping from co-activation matrices alone (what graced has) for 58 layers x
//     256 experts, dense matrices generated with planted groups (DeepSeek-V3's shape; no real
//     matrices of it exist): time on one thread, and how many planted pairs land on one GPU.
//  5. one-layer: grace plans Qwen layer 0 on 2 x 4 x 8 once (for profilers: callgrind counts
//     of one layer's token-aware plan).
// Usage: plan_bench [traces dir] [section...] (default dir: GRACE_TRACES_DIR or
// <source>/../shared/traces/real; sections: qwen, pairs, deepseek, one-layer; default all but
// one-layer).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/trace_import.h"
#include "policy/affinity_clustering.h"
#include "policy/eplb.h"
#include "policy/grace_policy.h"
#include "policy/layer_stats.h"
#include "policy/policy_comparison.h"

namespace {

using namespace grace;

std::vector<LayerStats> Load(const std::vector<std::string>& paths) {
  StatusOr<Trace> trace = ImportTraces(paths);
  if (!trace.ok()) {
    std::fprintf(stderr, "plan_bench: %s\n", trace.status().ToString().c_str());
    std::exit(2);
  }
  StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(*trace);
  if (!stats.ok()) std::exit(2);
  std::vector<LayerStats> out;
  for (LayerStats& s : *stats) {
    if (s.total_load() > 0) out.push_back(std::move(s));  // DeepSeek-V3's dense layers are 0
  }
  return out;
}

void Qwen(const std::string& dir) {
  const std::string q = dir + "/qwen1.5-moe-a2.7b-gsm8k/";
  const std::vector<LayerStats> layers =
      Load({q + "moe_layer0.jsonl", q + "moe_layer8.jsonl", q + "moe_layer12.jsonl"});
  const std::vector<std::string> names = {"grace", "eplb", "contiguous", "affinity"};
  for (const Topology& topo : {Topology{2, 4, 8}, Topology{2, 2, 16}}) {
    auto reports = ComparePolicies(layers, topo, CostParams{}, names);
    if (!reports.ok()) std::exit(2);
    std::printf("\nQwen1.5-MoE, %s (hidden 2048, bf16, NVLink %.0f Gb/s, NIC %.0f Gb/s)\n",
                topo.ToString().c_str(), topo.intra_node_gbps, topo.inter_node_gbps);
    std::printf("%-11s %-6s %10s %7s %10s %7s %9s %9s %8s\n", "policy", "layer", "remote/tok",
                "vs eplb", "xnode/tok", "vs eplb", "imbalance", "layer_ms", "speedup");
    const PolicyReport& eplb = (*reports)[1];
    for (const PolicyReport& r : *reports) {
      for (size_t i = 0; i < r.layers.size(); ++i) {
        const LayerCost& c = r.layers[i];
        const LayerCost& b = eplb.layers[i];
        std::printf("%-11s L%-5d %10.3f %7.3f %10.3f %7.3f %9.3f %9.3f %7.2fx\n", r.policy.c_str(),
                    r.layer_ids[i], c.remote_sends_per_token,
                    c.remote_sends_per_token / b.remote_sends_per_token,
                    c.cross_node_sends_per_token,
                    c.cross_node_sends_per_token / b.cross_node_sends_per_token, c.imbalance,
                    c.layer_ms, b.layer_ms / c.layer_ms);
      }
      std::printf("%-11s %-6s %10.3f %7.3f %10.3f %7.3f %9.3f %9.3f %7.2fx\n", r.policy.c_str(),
                  "mean", r.remote_sends_per_token, r.remote_sends_ratio,
                  r.cross_node_sends_per_token, r.cross_node_sends_ratio, r.imbalance,
                  r.modeled_layer_ms, r.speedup);
    }
    std::printf("plan time (3 layers, one thread):");
    for (const PolicyReport& r : *reports) std::printf("  %s %.0f ms", r.policy.c_str(), r.plan_ms);
    std::printf("\n");
  }
}

// grace planned from each Qwen layer's co-activation pairs alone (its tokens dropped: what
// graced gets from its agents), judged on the real tokens against grace on the tokens, grace on
// loads alone and EPLB.
void QwenFromPairs(const std::string& dir) {
  const std::string q = dir + "/qwen1.5-moe-a2.7b-gsm8k/";
  const std::vector<LayerStats> layers =
      Load({q + "moe_layer0.jsonl", q + "moe_layer8.jsonl", q + "moe_layer12.jsonl"});
  const CostParams params;
  for (const Topology& topo : {Topology{2, 4, 8}, Topology{2, 2, 16}}) {
    std::printf("\nQwen1.5-MoE, %s: grace from co-activation pairs alone, judged on the tokens\n",
                topo.ToString().c_str());
    std::printf("%-6s %-12s %10s %7s %10s %9s %9s %9s\n", "layer", "input", "remote/tok", "vs eplb",
                "xnode/tok", "imbalance", "layer_ms", "plan_ms");
    for (const LayerStats& full : layers) {
      LayerStats pairs = full;
      pairs.tokens.reset();
      LayerStats loads = pairs;
      loads.affinity.reset();
      double eplb_remote = 0;
      struct Row {
        const char* name;
        const PlacementPolicy* policy;
        const LayerStats* stats;
      };
      const GracePolicy grace;
      const EplbPolicy eplb;
      for (const Row& r :
           {Row{"eplb", &eplb, &full}, Row{"grace tokens", &grace, &full},
            Row{"grace pairs", &grace, &pairs}, Row{"grace loads", &grace, &loads}}) {
        const auto start = std::chrono::steady_clock::now();
        StatusOr<LayerPlan> plan = r.policy->PlanLayer(*r.stats, topo, params);
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count();
        if (!plan.ok()) std::exit(2);
        const LayerCost c = EvaluateLayerOnTokens(*full.tokens, plan->routing, topo, params);
        if (r.policy == &eplb) eplb_remote = c.remote_sends_per_token;
        std::printf("L%-5d %-12s %10.3f %7.3f %10.3f %9.3f %9.3f %9.0f\n", full.layer_id, r.name,
                    c.remote_sends_per_token, c.remote_sends_per_token / eplb_remote,
                    c.cross_node_sends_per_token, c.imbalance, c.layer_ms, ms);
      }
    }
  }
}

void DeepSeek(const std::string& dir) {
  const std::vector<LayerStats> layers =
      Load({dir + "/deepseek-v3-sglang-stats/prefill_in1024.json"});
  CostParams params;
  params.hidden_size = 7168;
  params.expert_ffn_size = 2048;
  const std::vector<std::string> names = {"grace", "eplb"};
  std::printf(
      "\nDeepSeek-V3 stats, %zu MoE layers x %d experts: whole-plan solve time (median "
      "of 9, one thread)\n",
      layers.size(), layers[0].num_experts());
  for (const Topology& topo : {Topology{12, 8, 3}, Topology{4, 8, 9}}) {
    std::vector<std::vector<double>> times(names.size());
    std::vector<PolicyReport> last;
    for (int run = 0; run < 9; ++run) {
      auto reports = ComparePolicies(layers, topo, params, names);
      if (!reports.ok()) std::exit(2);
      for (size_t i = 0; i < names.size(); ++i) times[i].push_back((*reports)[i].plan_ms);
      last = std::move(*reports);
    }
    std::printf("%s:", topo.ToString().c_str());
    for (size_t i = 0; i < names.size(); ++i) {
      std::sort(times[i].begin(), times[i].end());
      std::printf("  %s %.1f ms (max/mean load: mean %.3f, worst layer %.3f)", names[i].c_str(),
                  times[i][times[i].size() / 2], last[i].imbalance, last[i].worst_imbalance);
    }
    std::printf("\n");
  }
}

double ThreadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// One layer's co-activation counts with planted groups of `group` experts: count(a, b) =
// w_a w_b (in_weight inside a group, 1 across) x noise in [0.5, 1.5], w lognormal (skewed
// loads). Each expert has its group's 7 partners at weight 8 against 248 others at 1, so about
// a fifth of its co-activation is inside its group.
struct PlantedLayer {
  AffinityMatrix affinity;
  std::vector<double> load;
  std::vector<int> group_of;
};

PlantedLayer PlantGroups(int experts, int group, double in_weight, std::mt19937_64& rng) {
  PlantedLayer layer{AffinityMatrix(experts), std::vector<double>(experts), {}};
  std::vector<int> order(experts);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  layer.group_of.assign(experts, 0);
  for (int i = 0; i < experts; ++i) layer.group_of[order[i]] = i / group;
  std::lognormal_distribution<double> skew(0.0, 0.5);
  std::uniform_real_distribution<double> noise(0.5, 1.5);
  std::vector<double> w(experts);
  for (double& x : w) x = skew(rng);
  for (int a = 0; a < experts; ++a) {
    for (int b = a + 1; b < experts; ++b) {
      const double s = layer.group_of[a] == layer.group_of[b] ? in_weight : 1.0;
      layer.affinity.AddPair(a, b, 100.0 * w[a] * w[b] * s * noise(rng));
    }
  }
  for (int a = 0; a < experts; ++a) {
    std::span<const double> row = layer.affinity.row(a);
    layer.load[a] = std::accumulate(row.begin(), row.end(), 0.0) / 7.0;  // top-8: 7 partners
  }
  return layer;
}

void Matrices() {
  const int layers = 58, experts = 256;
  std::printf(
      "\nGrouping from co-activation matrices alone: %d layers x %d experts, dense, planted "
      "groups (median of 5, one thread)\n",
      layers, experts);
  for (const double in_weight : {8.0, 3.0}) {
    std::mt19937_64 rng(2024);
    std::vector<PlantedLayer> planted;
    for (int l = 0; l < layers; ++l) planted.push_back(PlantGroups(experts, 8, in_weight, rng));
    for (const Topology& topo : {Topology{4, 8, 9}, Topology{12, 8, 3}}) {
      std::vector<double> times, cpu_times;
      double kept = 0, pairs = 0, share = 0;
      for (int run = 0; run < 5; ++run) {
        kept = pairs = share = 0;
        const auto start = std::chrono::steady_clock::now();
        const double cpu_start = ThreadCpuMs();
        std::vector<std::vector<RankId>> groups;
        for (const PlantedLayer& p : planted) {
          groups.push_back(AffinityGroupsToGpus(p.affinity, p.load, topo));
        }
        cpu_times.push_back(ThreadCpuMs() - cpu_start);
        times.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count());
        for (int l = 0; l < layers; ++l) {
          const PlantedLayer& p = planted[l];
          double inside = 0, total = 0;
          for (int a = 0; a < experts; ++a) {
            for (int b = a + 1; b < experts; ++b) {
              const double c = p.affinity.at(a, b);
              total += c;
              if (groups[l][a] == groups[l][b]) inside += c;
              if (p.group_of[a] != p.group_of[b]) continue;
              ++pairs;
              kept += groups[l][a] == groups[l][b];
            }
          }
          share += inside / total / layers;
        }
      }
      std::sort(times.begin(), times.end());
      std::sort(cpu_times.begin(), cpu_times.end());
      // A GPU holds at most ceil(E / ranks) experts: a planted group of 8 keeps at most the
      // pairs of its best split into such parts.
      const int cap = (experts + topo.ranks() - 1) / topo.ranks();
      int best_pairs = 0;
      for (int left = 8; left > 0; left -= std::min(cap, left)) {
        const int part = std::min(cap, left);
        best_pairs += part * (part - 1) / 2;
      }
      std::printf(
          "in-group weight %.0f, %s: %.0f ms (%.0f ms CPU) for %d layers; planted pairs on one "
          "GPU %.3f of at most %.3f, co-activation on one GPU %.3f\n",
          in_weight, topo.ToString().c_str(), times[times.size() / 2],
          cpu_times[cpu_times.size() / 2], layers, kept / pairs, best_pairs / 28.0, share);
    }
  }
  // The whole token-aware plan (GracePolicy on tokens drawn from the matrix, as graced plans)
  // of two layers, for scale: re-planning all 58 costs 29x this.
  std::mt19937_64 rng(2024);
  CostParams params;
  params.hidden_size = 7168;
  params.expert_ffn_size = 2048;
  const Topology topo{4, 8, 9};
  const double cpu_start = ThreadCpuMs();
  for (int l = 0; l < 2; ++l) {
    PlantedLayer p = PlantGroups(experts, 8, 8.0, rng);
    LayerStats stats;
    stats.layer_id = l;
    stats.top_k = 8;
    stats.load = p.load;
    stats.affinity = std::move(p.affinity);
    if (!GracePolicy().PlanLayer(stats, topo, params).ok()) std::exit(2);
  }
  std::printf("whole grace plan from a matrix (tokens drawn from it), %s: %.0f ms CPU a layer\n",
              topo.ToString().c_str(), (ThreadCpuMs() - cpu_start) / 2);
}

void OneLayer(const std::string& dir) {
  const std::string q = dir + "/qwen1.5-moe-a2.7b-gsm8k/";
  const std::vector<LayerStats> layers = Load({q + "moe_layer0.jsonl"});
  const Topology topo{2, 4, 8};
  const CostParams params;
  const auto start = std::chrono::steady_clock::now();
  StatusOr<LayerPlan> plan = GracePolicy().PlanLayer(layers[0], topo, params);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!plan.ok()) std::exit(2);
  const LayerCost c = EvaluateLayerOnTokens(*layers[0].tokens, plan->routing, topo, params);
  std::printf("Qwen L%d, %s: remote/tok %.4f, max/mean %.4f, layer_ms %.4f, plan %.0f ms\n",
              layers[0].layer_id, topo.ToString().c_str(), c.remote_sends_per_token, c.imbalance,
              c.layer_ms, ms);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::vector<std::string> sections;
  for (int i = 2; i < argc; ++i) sections.push_back(argv[i]);
  if (sections.empty()) sections = {"qwen", "pairs", "deepseek", "matrices"};
  if (argc > 1) {
    dir = argv[1];
  } else if (const char* env = std::getenv("GRACE_TRACES_DIR"); env != nullptr && *env) {
    dir = env;
  } else {
    dir = std::string(GRACE_SOURCE_DIR) + "/../shared/traces/real";
  }
  for (const std::string& section : sections) {
    if (section == "qwen") {
      Qwen(dir);
    } else if (section == "pairs") {
      QwenFromPairs(dir);
    } else if (section == "deepseek") {
      DeepSeek(dir);
    } else if (section == "matrices") {
      Matrices();
    } else if (section == "one-layer") {
      OneLayer(dir);
    } else {
      std::fprintf(stderr, "plan_bench: unknown section %s\n", section.c_str());
      return 2;
    }
  }
  return 0;
}
