// gracectl plan, simulate and bench plan: offline placement planning and policy comparison on
// traces (policy/), no daemon needed.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/placement.h"
#include "core/trace_import.h"
#include "policy/eplb.h"
#include "policy/layer_stats.h"
#include "policy/policy_comparison.h"
#include "tools/commands.h"

namespace grace::tools {

namespace {

struct TopologyFlags {
  int nodes = 1;
  int gpus_per_node = 1;
  int slots_per_gpu = 1;
  double intra_node_gbps = Topology{}.intra_node_gbps;
  double inter_node_gbps = Topology{}.inter_node_gbps;
  CostParams params;

  void Add(CLI::App* cmd, bool required) {
    auto* n = cmd->add_option("--nodes", nodes, "nodes")->check(CLI::PositiveNumber);
    auto* g = cmd->add_option("--gpus-per-node", gpus_per_node, "GPUs per node")
                  ->check(CLI::PositiveNumber);
    auto* s = cmd->add_option("--slots-per-gpu", slots_per_gpu, "expert slots per GPU")
                  ->check(CLI::PositiveNumber);
    if (required) {
      n->required();
      g->required();
      s->required();
    }
    cmd->add_option("--intra-node-gbps", intra_node_gbps, "NVLink bandwidth, Gb/s")
        ->capture_default_str();
    cmd->add_option("--inter-node-gbps", inter_node_gbps, "NIC bandwidth per node, Gb/s")
        ->capture_default_str();
    cmd->add_option("--hidden", params.hidden_size, "model hidden size")->capture_default_str();
    cmd->add_option("--expert-ffn", params.expert_ffn_size, "expert FFN size")
        ->capture_default_str();
    cmd->add_option("--dtype-bytes", params.bytes_per_element, "bytes per activation element")
        ->capture_default_str();
    cmd->add_option("--gpu-tflops", params.gpu_tflops, "GPU peak TFLOP/s")->capture_default_str();
  }
  Topology topology() const {
    Topology t;
    t.nodes = nodes;
    t.gpus_per_node = gpus_per_node;
    t.slots_per_gpu = slots_per_gpu;
    t.intra_node_gbps = intra_node_gbps;
    t.inter_node_gbps = inter_node_gbps;
    return t;
  }
};

[[noreturn]] void Fail(int code, const std::string& message) {
  std::cerr << "gracectl: " << message << "\n";
  throw CommandExit{code};
}

std::vector<LayerStats> LoadStats(const std::vector<std::string>& paths) {
  StatusOr<Trace> trace = ImportTraces(paths);
  if (!trace.ok()) Fail(2, trace.status().ToString());
  StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(*trace);
  if (!stats.ok()) Fail(2, stats.status().ToString());
  return std::move(*stats);
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

nlohmann::json ReportJson(const PolicyReport& r) {
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const LayerCost& c = r.layers[i];
    layers.push_back({{"layer", r.layer_ids[i]},
                      {"remote_sends_per_token", c.remote_sends_per_token},
                      {"cross_node_sends_per_token", c.cross_node_sends_per_token},
                      {"imbalance", c.imbalance},
                      {"modeled_layer_ms", c.layer_ms},
                      {"compute_ms", c.compute_ms},
                      {"intra_node_ms", c.intra_ms},
                      {"inter_node_ms", c.inter_ms}});
  }
  return {{"remote_sends_per_token", r.remote_sends_per_token},
          {"cross_node_sends_per_token", r.cross_node_sends_per_token},
          {"imbalance", r.imbalance},
          {"worst_layer_imbalance", r.worst_imbalance},
          {"modeled_layer_ms", r.modeled_layer_ms},
          {"remote_sends_ratio_to_eplb", r.remote_sends_ratio},
          {"cross_node_sends_ratio_to_eplb", r.cross_node_sends_ratio},
          {"imbalance_ratio_to_eplb", r.imbalance_ratio},
          {"speedup_over_eplb", r.speedup},
          {"plan_ms", r.plan_ms},
          {"layers", layers}};
}

void PrintReports(const std::vector<PolicyReport>& reports, const Topology& topo) {
  std::printf("%s; means over layers; ratios to EPLB\n", topo.ToString().c_str());
  std::printf("%-11s %10s %7s %10s %7s %9s %9s %10s %8s\n", "policy", "remote/tok", "ratio",
              "xnode/tok", "ratio", "imbalance", "worst", "layer_ms", "speedup");
  for (const PolicyReport& r : reports) {
    std::printf("%-11s %10.3f %7.3f %10.3f %7.3f %9.3f %9.3f %10.3f %7.2fx\n", r.policy.c_str(),
                r.remote_sends_per_token, r.remote_sends_ratio, r.cross_node_sends_per_token,
                r.cross_node_sends_ratio, r.imbalance, r.worst_imbalance, r.modeled_layer_ms,
                r.speedup);
  }
  for (const PolicyReport& r : reports) {
    std::printf("%s per layer:", r.policy.c_str());
    for (size_t i = 0; i < r.layers.size(); ++i) {
      std::printf("  L%d remote %.3f xnode %.3f imb %.3f %.3f ms", r.layer_ids[i],
                  r.layers[i].remote_sends_per_token, r.layers[i].cross_node_sends_per_token,
                  r.layers[i].imbalance, r.layers[i].layer_ms);
    }
    std::printf("\n");
  }
}

// Per layer on stderr (stdout may carry the placement): the plan's figures beside EPLB's at the
// same slots, and the choice the policy made.
void PrintAgainstEplb(const PlacementPlan& plan, const std::vector<LayerStats>& layers,
                      const Topology& topo, const CostParams& params) {
  StatusOr<PlacementPlan> eplb = PlanAllLayers(EplbPolicy(), layers, topo, params);
  if (!eplb.ok()) return;
  std::fprintf(stderr, "%-6s %21s %21s %17s %19s  %s\n", "layer", "remote/tok (eplb)",
               "xnode/tok (eplb)", "max/mean (eplb)", "layer_ms (eplb)", "choice");
  for (size_t li = 0; li < layers.size(); ++li) {
    const LayerCost a = EvaluateLayer(layers[li], plan.routings[li], topo, params);
    const LayerCost b = EvaluateLayer(layers[li], eplb->routings[li], topo, params);
    std::fprintf(stderr, "L%-5d %10.3f (%8.3f) %10.3f (%8.3f) %8.3f (%6.3f) %9.3f (%7.3f)  %s\n",
                 layers[li].layer_id, a.remote_sends_per_token, b.remote_sends_per_token,
                 a.cross_node_sends_per_token, b.cross_node_sends_per_token, a.imbalance,
                 b.imbalance, a.layer_ms, b.layer_ms,
                 li < plan.choices.size() ? plan.choices[li].c_str() : "");
  }
}

std::string DefaultDeepSeekStats() {
  const char* env = std::getenv("GRACE_TRACES_DIR");
  const std::string dir = env != nullptr && *env != '\0'
                              ? std::string(env)
                              : std::string(GRACE_SOURCE_DIR) + "/../shared/traces/real";
  return dir + "/deepseek-v3-sglang-stats/prefill_in1024.json";
}

void RunBenchPlan(const std::vector<std::string>& paths, int repeats, bool json) {
  std::vector<LayerStats> all = LoadStats(paths);
  std::vector<LayerStats> layers;
  for (LayerStats& s : all) {
    if (s.total_load() > 0) layers.push_back(std::move(s));  // DeepSeek-V3's dense layers are 0
  }
  CostParams params;
  params.hidden_size = 7168;  // DeepSeek-V3
  params.expert_ffn_size = 2048;
  nlohmann::json out = nlohmann::json::array();
  for (const Topology& topo : {Topology{12, 8, 3}, Topology{4, 8, 9}}) {
    nlohmann::json row = {{"topology", topo.ToString()}, {"layers", layers.size()}};
    for (const std::string name : {"grace", "eplb"}) {
      std::unique_ptr<PlacementPolicy> policy = std::move(*MakePlacementPolicy(name));
      std::vector<double> times;
      PlacementPlan plan;
      for (int i = 0; i < std::max(1, repeats); ++i) {
        const auto start = std::chrono::steady_clock::now();
        StatusOr<PlacementPlan> p = PlanAllLayers(*policy, layers, topo, params);
        times.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count());
        if (!p.ok()) Fail(2, p.status().ToString());
        plan = std::move(*p);
      }
      std::sort(times.begin(), times.end());
      double mean_imb = 0, worst_imb = 0;
      for (size_t li = 0; li < layers.size(); ++li) {
        const LayerCost c = EvaluateLayer(layers[li], plan.routings[li], topo, params);
        mean_imb += c.imbalance / layers.size();
        worst_imb = std::max(worst_imb, c.imbalance);
      }
      row[name] = {{"median_plan_ms", times[times.size() / 2]},
                   {"imbalance", mean_imb},
                   {"worst_layer_imbalance", worst_imb}};
    }
    out.push_back(row);
    if (!json) {
      std::printf(
          "%-22s %zu layers: grace %8.2f ms (imbalance mean %.3f, worst %.3f) | eplb "
          "%8.2f ms (imbalance mean %.3f, worst %.3f)\n",
          topo.ToString().c_str(), layers.size(), row["grace"]["median_plan_ms"].get<double>(),
          row["grace"]["imbalance"].get<double>(),
          row["grace"]["worst_layer_imbalance"].get<double>(),
          row["eplb"]["median_plan_ms"].get<double>(), row["eplb"]["imbalance"].get<double>(),
          row["eplb"]["worst_layer_imbalance"].get<double>());
    }
  }
  if (json) std::cout << nlohmann::json{{"plan", out}}.dump(2) << "\n";
}

}  // namespace

void AddPlanCommands(CLI::App& app, CLI::App& bench) {
  {
    auto* cmd = app.add_subcommand("plan", "plan a placement from traces; writes placement JSON");
    auto traces = std::make_shared<std::vector<std::string>>();
    auto flags = std::make_shared<TopologyFlags>();
    auto policy = std::make_shared<std::string>("grace");
    auto output = std::make_shared<std::string>();
    cmd->add_option("--trace", *traces, "trace files (any format gracectl trace info reads)")
        ->required();
    flags->Add(cmd, true);
    cmd->add_option("--policy", *policy, "grace, eplb, contiguous or affinity")
        ->capture_default_str();
    cmd->add_option("-o,--output", *output, "placement JSON to write (default: stdout)");
    cmd->callback([=] {
      const Topology topo = flags->topology();
      if (Status s = topo.Validate(); !s.ok()) Fail(2, s.ToString());
      std::vector<LayerStats> layers = LoadStats(*traces);
      // A layer that routed no token is not an MoE layer (DeepSeek-V3's first 3 are dense in
      // SGLang's dumps): it gets no placement row, as vLLM and TensorRT-LLM expect.
      const size_t all = layers.size();
      std::erase_if(layers, [](const LayerStats& s) { return s.total_load() <= 0; });
      if (layers.empty()) Fail(2, "--trace: no layer routed any token");
      if (layers.size() < all) {
        std::cerr << "gracectl plan: skipped " << all - layers.size()
                  << " layer(s) without routed tokens (dense layers)\n";
      }
      StatusOr<std::unique_ptr<PlacementPolicy>> p = MakePlacementPolicy(*policy);
      if (!p.ok()) Fail(2, p.status().ToString());
      StatusOr<PlacementPlan> plan = PlanAllLayers(**p, layers, topo, flags->params);
      if (!plan.ok()) Fail(2, plan.status().ToString());
      if (*policy != "eplb") PrintAgainstEplb(*plan, layers, topo, flags->params);
      const std::string text = PlacementToJson(plan->placement, topo);
      if (output->empty()) {
        std::cout << text << "\n";
      } else {
        std::ofstream out(*output);
        out << text << "\n";
        if (!out) Fail(2, "cannot write " + *output);
      }
    });
  }
  {
    auto* cmd = app.add_subcommand("simulate", "compare placement policies on traces");
    auto traces = std::make_shared<std::vector<std::string>>();
    auto flags = std::make_shared<TopologyFlags>();
    auto policies = std::make_shared<std::string>("grace,eplb,contiguous,affinity");
    auto json = std::make_shared<bool>(false);
    auto online = std::make_shared<bool>(false);
    auto scenario = std::make_shared<std::string>();
    cmd->add_option("--trace", *traces, "trace files");
    flags->Add(cmd, false);
    cmd->add_option("--policies", *policies, "comma-separated policies")->capture_default_str();
    cmd->add_flag("--json", *json, "print JSON");
    cmd->add_flag("--online", *online, "simulate online re-placement of a scenario");
    cmd->add_option("--scenario", *scenario, "online scenario file (with --online)");
    cmd->callback([=] {
      if (*online) throw CommandExit{RunOnlineSimulate(*scenario, *json)};
      if (traces->empty()) Fail(2, "simulate: --trace is required (or --online --scenario)");
      const Topology topo = flags->topology();
      if (Status s = topo.Validate(); !s.ok()) Fail(2, s.ToString());
      std::vector<LayerStats> layers = LoadStats(*traces);
      const std::vector<std::string> names = SplitComma(*policies);
      StatusOr<std::vector<PolicyReport>> reports =
          ComparePolicies(layers, topo, flags->params, names);
      if (!reports.ok()) Fail(2, reports.status().ToString());
      if (*json) {
        nlohmann::json out = {{"topology", topo.ToString()},
                              {"policies", nlohmann::json::object()}};
        for (const PolicyReport& r : *reports) out["policies"][r.policy] = ReportJson(r);
        std::cout << out.dump(2) << "\n";
      } else {
        PrintReports(*reports, topo);
      }
    });
  }
  {
    auto* cmd = bench.add_subcommand("plan", "solve time of grace vs EPLB on DeepSeek-V3 stats");
    auto traces = std::make_shared<std::vector<std::string>>();
    auto repeats = std::make_shared<int>(7);
    auto json = std::make_shared<bool>(false);
    cmd->add_option("--trace", *traces, "stats files (default: the DeepSeek-V3 SGLang stats)");
    cmd->add_option("--repeats", *repeats, "runs per policy (median reported)")
        ->capture_default_str();
    cmd->add_flag("--json", *json, "print JSON");
    cmd->callback([=] {
      RunBenchPlan(traces->empty() ? std::vector<std::string>{DefaultDeepSeekStats()} : *traces,
                   *repeats, *json);
    });
  }
}

}  // namespace grace::tools
