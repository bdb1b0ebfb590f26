// graced under load: the real daemon process, N simulated ranks (8 per agent) reporting
// DeepSeek-V3-shaped load (58 MoE layers x 256 experts, drawn from the real SGLang prefill
// statistics when ../shared/traces/real is present) every second, each report with its
// co-activation and traffic sections; then a paced REST client.
// Prints one JSON object:
//   agents, agents_connected, connect_s: simulated agents (8 ranks each), how many joined, and
//                      how long until all had (the bench waits at most 60 s)
//   cpu_cores          graced's CPU time / wall time while agents report (target < 0.5)
//   sim_cpu_cores      the bench's own (the simulated agents' I/O thread), and
//   machine_cpu_cores  every process's, over the same window: graced's figure is its own
//   reports_per_s      load reports graced ingested per second
//   report_bytes       one report's frame: counts, 512 co-activation pairs per layer and the
//                      traffic of the agent's 8 ranks, as real agents send
//   control_round_ms   last and slowest control round (aggregate, forecast, decide): the
//                      report-to-decision latency
//   rest_p50_ms, rest_p99_ms at rest_rps requests/s (target p99 < 10 ms at 200/s), and apart
//                      rest_traffic_p50_ms, rest_traffic_p99_ms for GET /api/v1/traffic
//
// With --drift-every N the load moves every N reports through the 8 DeepSeek-V3 prefill
// statistics (input lengths 512 to 4096), so layers keep being re-scored and re-placed.
//
//   daemon_bench [--ranks 1000] [--seconds 30] [--rest-rps 200] [--rest-seconds 10]
//                [--drift-every 0] [--coactivation-pairs 512]
// (--coactivation-pairs 0: reports without co-activation, for comparison)
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/local_cluster.h"
#include "bench/scratch_graced.h"
#include "core/trace_import.h"
#include "tests/testing/child_process.h"
#include "tools/sim_agents.h"

namespace {

using Clock = std::chrono::steady_clock;

// CPU time of every core but idle and iowait, from /proc/stat: what else ran beside the bench.
double MachineBusySeconds() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  f >> cpu;
  double total = 0, idle = 0, v = 0;
  for (int i = 0; i < 8 && f >> v; ++i) {
    total += v;
    if (i == 3 || i == 4) idle += v;
  }
  return (total - idle) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double MetricValue(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  int ranks = 1000, seconds = 30, rest_rps = 200, rest_seconds = 10, drift_every = 0;
  int coactivation_pairs = 512;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--ranks")
      ranks = v;
    else if (a == "--seconds")
      seconds = v;
    else if (a == "--rest-rps")
      rest_rps = v;
    else if (a == "--rest-seconds")
      rest_seconds = v;
    else if (a == "--drift-every")
      drift_every = v;
    else if (a == "--coactivation-pairs")
      coactivation_pairs = v;
  }
  const int gpus_per_node = 8;
  const int nodes = std::max(1, ranks / gpus_per_node);
  const int layers = 58, experts = 256;
  // Enough slots for every expert plus a quarter spare, at least one per GPU.
  const int slots_per_gpu =
      std::max(1, (experts * 5 / 4 + nodes * gpus_per_node - 1) / (nodes * gpus_per_node));

  // Real DeepSeek-V3 per-layer loads (MoE layers 3..60), one phase.
  grace::SimAgentOptions sim;
  const char* env_traces = std::getenv("GRACE_TRACES_DIR");
  const std::string traces = env_traces ? env_traces : GRACE_SOURCE_DIR "/../shared/traces/real";
  std::vector<std::string> phases = {"prefill_in1024"};
  if (drift_every > 0) {
    phases = {"prefill_in512",        "prefill_in1024",       "prefill_in2048",
              "prefill_in4096",       "prefill_in500out1500", "prefill_in1000out1000",
              "prefill_in1800out100", "prefill_in2000out100"};
  }
  std::string load_source = "zipf";
  for (const std::string& phase : phases) {
    auto trace = grace::ImportTraces({traces + "/deepseek-v3-sglang-stats/" + phase + ".json"});
    if (!trace.ok()) {
      sim.phase_loads.clear();
      break;
    }
    auto loads = trace->LayerLoads();
    sim.phase_loads.emplace_back(loads.begin() + (loads.size() - layers), loads.end());
    load_source = "deepseek-v3 " + (phases.size() == 1 ? phase : "prefill statistics, drifting");
  }
  if (sim.phase_loads.empty()) load_source = "zipf";
  sim.drift_every_reports = drift_every;

  std::ostringstream tables;
  tables << "[agents]\nheartbeat_ms = 1000\nreport_ms = 1000\nlost_after_ms = 10000\n"
         << "[topology]\nnodes = " << nodes << "\ngpus_per_node = " << gpus_per_node
         << "\nslots_per_gpu = " << slots_per_gpu << "\n"
         << "[model]\nnum_experts = " << experts
         << "\ntop_k = 8\nhidden = 7168\nexpert_ffn = 2048\nlayers = [";
  for (int l = 0; l < layers; ++l) tables << (l ? ", " : "") << l + 3;
  tables << "]\n[policy]\ninterval_s = 1\n";
  grace::ScratchGraced graced;
  if (grace::Status up = grace::StartScratchGraced(
          std::filesystem::temp_directory_path() / ("graced_bench_" + std::to_string(::getpid())),
          tables.str(), std::chrono::seconds(120), &graced);
      !up.ok()) {
    std::cerr << up.message() << "\n";
    return 1;
  }
  httplib::Client client("127.0.0.1", graced.http_port);
  client.set_connection_timeout(1, 0);

  sim.daemon_port = graced.agents_port;
  sim.cluster_secret = "bench";
  sim.topology.nodes = nodes;
  sim.topology.gpus_per_node = gpus_per_node;
  sim.topology.slots_per_gpu = slots_per_gpu;
  sim.num_layers = layers;
  sim.num_experts = experts;
  sim.top_k = 8;
  sim.tokens_per_step = 128;
  sim.steps_per_second = 10;
  sim.report_ms = 1000;
  sim.coactivation_pairs = coactivation_pairs;
  grace::SimAgentFleet fleet(sim);
  const auto connect0 = Clock::now();
  if (!fleet.Start().ok()) return 1;
  // Every agent connected (at most a minute), then a few seconds to warm up.
  while (fleet.Stats().connected < nodes && Clock::now() - connect0 < std::chrono::seconds(60)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double connect_s = std::chrono::duration<double>(Clock::now() - connect0).count();
  std::this_thread::sleep_for(std::chrono::seconds(5));

  auto metrics = [&] {
    auto r = client.Get("/metrics");
    return r ? r->body : std::string();
  };
  const double reports0 = MetricValue(metrics(), "grace_load_reports_total");
  const pid_t pid = graced.process.pid();
  const double g0 = grace::ProcessCpuSeconds(pid);
  const double s0 =
      grace::ProcessCpuSeconds(getpid());  // this process: the simulated agents' I/O thread
  const double m0 = MachineBusySeconds();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const double g1 = grace::ProcessCpuSeconds(pid);
  const double s1 = grace::ProcessCpuSeconds(getpid());
  const double m1 = MachineBusySeconds();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::string m = metrics();
  const double reports1 = MetricValue(m, "grace_load_reports_total");

  // REST: paced requests over a mix of read endpoints; GET /api/v1/traffic (every rank's load
  // of every layer, the largest answer) is timed apart.
  const char* paths[] = {"/api/v1/status", "/api/v1/policy", "/api/v1/decisions?limit=20",
                         "/api/v1/agents", "/metrics",       "/healthz",
                         "/api/v1/traffic"};
  std::vector<double> latencies, traffic_latencies;
  const auto period = std::chrono::duration<double>(1.0 / rest_rps);
  const auto r0 = Clock::now();
  for (int i = 0; i < rest_rps * rest_seconds; ++i) {
    std::this_thread::sleep_until(r0 + std::chrono::duration_cast<Clock::duration>(period * i));
    const auto s = Clock::now();
    const size_t which = i % std::size(paths);
    auto res = client.Get(paths[which]);
    if (res && res->status == 200) {
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
      (which + 1 == std::size(paths) ? traffic_latencies : latencies).push_back(ms);
    }
  }
  const grace::SimAgentStats st = fleet.Stats();
  fleet.Stop();
  graced.process.Kill(SIGTERM);

  nlohmann::json out = {
      {"ranks", nodes * gpus_per_node},
      {"agents", nodes},
      {"agents_connected", st.connected},
      {"connect_s", connect_s},
      {"layers", layers},
      {"experts", experts},
      {"load_source", load_source},
      {"drift_every_reports", drift_every},
      {"seconds", wall},
      {"cpu_cores", (g1 - g0) / wall},
      {"sim_cpu_cores", (s1 - s0) / wall},
      {"machine_cpu_cores", (m1 - m0) / wall},
      {"reports_per_s", (reports1 - reports0) / wall},
      {"report_bytes", st.report_bytes},
      {"coactivation_pairs_per_report", sim.coactivation_pairs * layers},
      {"migrations", MetricValue(m, "grace_migrations_total")},
      {"control_round_ms", MetricValue(m, "grace_control_round_seconds") * 1000},
      {"control_round_max_ms", MetricValue(m, "grace_control_round_max_seconds") * 1000},
      {"rest_rps", rest_rps},
      {"rest_ok", latencies.size() + traffic_latencies.size()},
      {"rest_p50_ms", Percentile(latencies, 0.5)},
      {"rest_p99_ms", Percentile(latencies, 0.99)},
      {"rest_traffic_p50_ms", Percentile(traffic_latencies, 0.5)},
      {"rest_traffic_p99_ms", Percentile(traffic_latencies, 0.99)}};
  std::cout << out.dump(2) << std::endl;
  std::filesystem::remove_all(graced.dir);
  return 0;
}
