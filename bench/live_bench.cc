#include "bench/live_bench.h"

#include <unistd.h>

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/local_cluster.h"
#include "core/native_trace.h"
#include "core/placement.h"
#include "core/trace_import.h"
#include "policy/cost_model.h"
#include "policy/layer_stats.h"
#include "policy/locality_routing.h"
#include "tests/testing/child_process.h"

namespace grace {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr const char* kApiToken = "live-bench-token";
constexpr const char* kClusterSecret = "live-bench-secret";

StatusOr<json> GetJson(httplib::Client& client, const std::string& path) {
  auto res = client.Get(path);
  if (!res) return Unavailable("graced: GET " + path + ": " + httplib::to_string(res.error()));
  if (res->status != 200) {
    return Unavailable("graced: GET " + path + " answered " + std::to_string(res->status) + ": " +
                       res->body);
  }
  json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded()) return DataLoss("graced: GET " + path + ": not JSON");
  return j;
}

// Cumulative measured traffic per layer, from GET /api/v1/traffic.
struct LayerCounters {
  double tokens = 0, remote_sends = 0, cross_node_sends = 0;
  std::vector<double> rank_load;
};

StatusOr<std::vector<LayerCounters>> ReadTraffic(httplib::Client& client, int layers) {
  GRACE_ASSIGN_OR_RETURN(json j, GetJson(client, "/api/v1/traffic"));
  if (!j.contains("layers") || !j["layers"].is_array() ||
      static_cast<int>(j["layers"].size()) != layers) {
    return DataLoss("graced: /api/v1/traffic: expected " + std::to_string(layers) + " layers");
  }
  std::vector<LayerCounters> out(layers);
  for (int l = 0; l < layers; ++l) {
    const json& x = j["layers"][l];
    out[l].tokens = x.value("tokens", 0.0);
    out[l].remote_sends = x.value("remote_sends", 0.0);
    out[l].cross_node_sends = x.value("cross_node_sends", 0.0);
    if (x.contains("rank_load")) out[l].rank_load = x["rank_load"].get<std::vector<double>>();
  }
  return out;
}

double Imbalance(std::span<const double> rank_load) {
  if (rank_load.empty()) return 1.0;
  double sum = 0, top = 0;
  for (double v : rank_load) sum += v, top = std::max(top, v);
  return sum > 0 ? top / (sum / rank_load.size()) : 1.0;
}

template <typename F>
bool Eventually(F probe, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (probe()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return probe();
}

}  // namespace

std::string FindGracedBinary() {
  if (const char* env = std::getenv("GRACE_GRACED_BINARY"); env != nullptr && *env != '\0') {
    return env;
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "graced";
  const fs::path build = (exe.parent_path() / ".." / "daemon" / "graced").lexically_normal();
  if (fs::exists(build, ec)) return build.string();
  return (exe.parent_path() / "graced").string();
}

StatusOr<json> RunLiveBench(const LiveBenchOptions& o) {
  if (o.traces.empty()) return InvalidArgument("--trace: at least one trace file");
  if (o.policy != "grace" && o.policy != "eplb" && o.policy != "pinned") {
    return InvalidArgument("--policy: '" + o.policy + "' (expected grace, eplb or pinned)");
  }
  if (o.policy == "pinned" && o.placement_file.empty()) {
    return InvalidArgument("--policy pinned needs --placement FILE");
  }
  if (!(o.seconds >= 4)) return InvalidArgument("--seconds: at least 4");
  const Topology& topo = o.topology;
  GRACE_RETURN_IF_ERROR(topo.Validate());

  GRACE_ASSIGN_OR_RETURN(Trace trace, ImportTraces(o.traces));
  if (trace.info.kind != TraceKind::kTokens || trace.TotalTokens() == 0) {
    return InvalidArgument(o.traces[0] + ": the live bench replays tokens; this trace has " +
                           (trace.info.kind == TraceKind::kTokens ? "none" : "counts only"));
  }
  GRACE_ASSIGN_OR_RETURN(std::vector<LayerStats> stats, LayerStatsFromTrace(trace));
  const int layers = trace.info.num_layers();
  const int experts = trace.info.num_experts;
  if (experts > topo.total_slots()) {
    return InvalidArgument("the trace has " + std::to_string(experts) + " experts, more than the " +
                           std::to_string(topo.total_slots()) + " slots of " + topo.ToString());
  }
  std::string pinned_json;
  if (o.policy == "pinned") {
    std::ifstream in(o.placement_file);
    if (!in) return InvalidArgument(o.placement_file + ": cannot read");
    std::stringstream text;
    text << in.rdbuf();
    pinned_json = text.str();
    Topology file_topology;
    GRACE_ASSIGN_OR_RETURN(Placement p,
                           PlacementFromJson(pinned_json, o.placement_file, &file_topology));
    if (p.num_experts != experts || p.num_layers() != layers) {
      return InvalidArgument(o.placement_file + ": " + std::to_string(p.num_layers()) +
                             " layers x " + std::to_string(p.num_experts) +
                             " experts; the trace has " + std::to_string(layers) + " x " +
                             std::to_string(experts));
    }
    GRACE_RETURN_IF_ERROR(p.Validate(topo).WithContext(o.placement_file));
  }

  // The run's files.
  const bool keep = !o.work_dir.empty();
  const fs::path dir =
      keep ? fs::path(o.work_dir)
           : fs::temp_directory_path() / ("grace_live_bench_" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(dir / "state", ec);
  fs::create_directories(dir, ec);
  if (ec) return Unavailable(dir.string() + ": " + ec.message());
  const std::string trace_path = (dir / "trace.gtrace").string();
  GRACE_RETURN_IF_ERROR(WriteNativeTrace(trace_path, trace));
  std::string placement_path;
  if (o.policy == "pinned") {
    placement_path = (dir / "pinned.json").string();
    std::ofstream(placement_path) << pinned_json;
  }

  GRACE_ASSIGN_OR_RETURN(int http_port, PickFreePort());
  GRACE_ASSIGN_OR_RETURN(int agents_port, PickFreePort());
  GRACE_ASSIGN_OR_RETURN(int rendezvous_port, PickFreePortRange(1));
  GRACE_ASSIGN_OR_RETURN(int migration_port, PickFreePortRange(8));
  std::string layer_list;
  for (int l = 0; l < layers; ++l) {
    layer_list += (l ? ", " : "") + std::to_string(trace.info.layer_ids[l]);
  }
  const std::string graced_config = (dir / "graced.toml").string();
  {
    std::ofstream f(graced_config);
    f << "[daemon]\nhttp = \"127.0.0.1:" << http_port << "\"\nagents = \"127.0.0.1:" << agents_port
      << "\"\nstate_dir = \"" << (dir / "state").string() << "\"\n";
    if (!placement_path.empty()) f << "initial_placement = \"" << placement_path << "\"\n";
    f << "[agents]\nheartbeat_ms = 200\nreport_ms = 500\n"
      << "[topology]\nnodes = " << topo.nodes << "\ngpus_per_node = " << topo.gpus_per_node
      << "\nslots_per_gpu = " << topo.slots_per_gpu
      << "\ninter_node_gbps = " << topo.inter_node_gbps
      << "\nintra_node_gbps = " << topo.intra_node_gbps << "\n"
      << "[model]\nnum_experts = " << experts << "\ntop_k = " << trace.info.top_k << "\nlayers = ["
      << layer_list << "]\nhidden = " << o.hidden << "\nexpert_ffn = " << o.expert_ffn << "\n"
      << "[policy]\ninterval_s = " << o.interval_s << "\ncooldown_s = " << 2 * o.interval_s
      << "\nhorizon_intervals = " << o.horizon_intervals
      << "\nbyte_budget_mb = " << o.byte_budget_mb << "\nplanner = \""
      << (o.policy == "eplb" ? "eplb" : "grace") << "\"\n";
  }
  std::vector<std::string> agent_configs;
  for (NodeId n = 0; n < topo.nodes; ++n) {
    const std::string path = (dir / ("agent" + std::to_string(n) + ".toml")).string();
    const fs::path out = dir / ("agent" + std::to_string(n));
    fs::create_directories(out, ec);
    std::ofstream f(path);
    f << "[cluster]\nnodes = " << topo.nodes << "\nranks_per_node = " << topo.gpus_per_node
      << "\nslots_per_rank = " << topo.slots_per_gpu << "\n"
      << "[agent]\nfirst_rank = " << n * topo.gpus_per_node
      << "\nlocal_ranks = " << topo.gpus_per_node << "\n"
      << "[transport]\nrendezvous = \"127.0.0.1:" << rendezvous_port << "\"\n"
      << "[model]\nexperts = " << experts << "\ntop_k = " << trace.info.top_k
      << "\nhidden = 32\nffn = 64\nlayers = " << layers << "\n"
      << "[replay]\ntrace = \"" << trace_path << "\"\nsteps_per_second = " << o.steps_per_second
      << "\nloop = true\n"
      << "[daemon]\naddress = \"127.0.0.1:" << agents_port << "\"\nagent_id = \"node" << n << "\"\n"
      << "[migration]\nrendezvous = \"127.0.0.1:" << migration_port << "\"\n"
      << "[output]\ndir = \"" << out.string() << "\"\n";
    agent_configs.push_back(path);
  }

  ::setenv("GRACE_API_TOKEN", kApiToken, 1);
  ::setenv("GRACE_CLUSTER_SECRET", kClusterSecret, 1);
  const std::string graced_log = (dir / "graced.log").string();
  testing::ChildProcess graced;
  const std::string graced_binary = o.graced_binary.empty() ? FindGracedBinary() : o.graced_binary;
  if (!graced.Start({graced_binary, "--config", graced_config}, {}, graced_log)) {
    return Unavailable("cannot start " + graced_binary);
  }
  httplib::Client client("127.0.0.1", http_port);
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_read_timeout(std::chrono::seconds(10));
  if (!Eventually([&] { return GetJson(client, "/healthz").ok() || !graced.Running(); },
                  std::chrono::seconds(30)) ||
      !graced.Running()) {
    return Unavailable("graced did not come up; see " + graced_log);
  }
  if (o.policy == "pinned") {
    httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kApiToken}};
    auto res = client.Post("/api/v1/pause", auth, "", "application/json");
    if (!res || res->status / 100 != 2) return Unavailable("graced: POST /api/v1/pause failed");
  }
  const std::string agent_binary = o.agent_binary.empty() ? FindAgentBinary() : o.agent_binary;
  std::vector<std::unique_ptr<testing::ChildProcess>> agents;
  for (size_t i = 0; i < agent_configs.size(); ++i) {
    agents.push_back(std::make_unique<testing::ChildProcess>());
    if (!agents.back()->Start({agent_binary, "--config", agent_configs[i]}, {},
                              (dir / ("agent" + std::to_string(i) + ".log")).string())) {
      return Unavailable("cannot start " + agent_binary);
    }
  }
  auto all_running = [&] {
    if (!graced.Running()) return false;
    for (auto& a : agents) {
      if (!a->Running()) return false;
    }
    return true;
  };
  if (!Eventually(
          [&] {
            auto s = GetJson(client, "/api/v1/status");
            return !all_running() ||
                   (s.ok() && (*s).value("agents_up", 0) == static_cast<int>(agents.size()));
          },
          std::chrono::seconds(60)) ||
      !all_running()) {
    return Unavailable("the agents did not all join; see the logs in " + dir.string());
  }

  // The run: the second half is measured.
  const auto start = Clock::now();
  auto wait_until = [&](double seconds) -> Status {
    auto last_note = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
      if (!all_running()) return Unavailable("a process exited; see the logs in " + dir.string());
      if (o.progress && Clock::now() - last_note > std::chrono::seconds(5)) {
        last_note = Clock::now();
        auto s = GetJson(client, "/api/v1/status");
        std::fprintf(stderr, "bench live: %.0f / %.0f s, epoch %d\n",
                     std::chrono::duration<double>(Clock::now() - start).count(), o.seconds,
                     s.ok() ? (*s).value("epoch", 0) : -1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return Status::Ok();
  };
  GRACE_RETURN_IF_ERROR(wait_until(o.seconds / 2));
  GRACE_ASSIGN_OR_RETURN(std::vector<LayerCounters> half, ReadTraffic(client, layers));
  GRACE_ASSIGN_OR_RETURN(json half_status, GetJson(client, "/api/v1/status"));
  GRACE_RETURN_IF_ERROR(wait_until(o.seconds));
  GRACE_ASSIGN_OR_RETURN(std::vector<LayerCounters> end, ReadTraffic(client, layers));
  GRACE_ASSIGN_OR_RETURN(json end_status, GetJson(client, "/api/v1/status"));
  GRACE_ASSIGN_OR_RETURN(json placement, GetJson(client, "/api/v1/placement"));
  for (auto& a : agents) a->Stop();
  graced.Stop();

  // Measured over the second half, and modeled for the final placement on the trace's tokens.
  std::vector<std::vector<ExpertId>> rows =
      placement.at("physical_to_logical_map").get<std::vector<std::vector<ExpertId>>>();
  if (static_cast<int>(rows.size()) != layers) return DataLoss("graced: placement layers differ");
  const CostParams params{.hidden_size = o.hidden, .expert_ffn_size = o.expert_ffn};
  json per_layer = json::array();
  double tokens = 0, remote = 0, cross = 0, imbalance = 0;
  double model_remote = 0, model_cross = 0, model_imbalance = 0;
  for (int l = 0; l < layers; ++l) {
    const double t = end[l].tokens - half[l].tokens;
    const double r = end[l].remote_sends - half[l].remote_sends;
    const double x = end[l].cross_node_sends - half[l].cross_node_sends;
    std::vector<double> rank_load(end[l].rank_load.size(), 0.0);
    for (size_t i = 0; i < rank_load.size() && i < half[l].rank_load.size(); ++i) {
      rank_load[i] = end[l].rank_load[i] - half[l].rank_load[i];
    }
    const LayerRouting routing = LocalityRouting(rows[l], stats[l].load, topo);
    const LayerCost c = EvaluateLayerOnTokens(*stats[l].tokens, routing, topo, params);
    const double measured_imbalance = Imbalance(rank_load);
    per_layer.push_back({{"layer", trace.info.layer_ids[l]},
                         {"tokens", t},
                         {"measured",
                          {{"remote_sends_per_token", t > 0 ? r / t : 0.0},
                           {"cross_node_sends_per_token", t > 0 ? x / t : 0.0},
                           {"imbalance", measured_imbalance}}},
                         {"modeled",
                          {{"remote_sends_per_token", c.remote_sends_per_token},
                           {"cross_node_sends_per_token", c.cross_node_sends_per_token},
                           {"imbalance", c.imbalance}}}});
    tokens += t, remote += r, cross += x, imbalance += measured_imbalance / layers;
    model_remote += c.remote_sends_per_token / layers;
    model_cross += c.cross_node_sends_per_token / layers;
    model_imbalance += c.imbalance / layers;
  }
  if (tokens <= 0) return Unavailable("graced counted no traffic in the second half");
  json out = {
      {"policy", o.policy},
      {"topology", topo.ToString()},
      {"seconds", o.seconds},
      {"measured",
       {{"remote_sends_per_token", remote / tokens},
        {"cross_node_sends_per_token", cross / tokens},
        {"imbalance", imbalance}}},
      {"modeled",
       {{"remote_sends_per_token", model_remote},
        {"cross_node_sends_per_token", model_cross},
        {"imbalance", model_imbalance}}},
      {"migrations", end_status.value("migrations_total", 0)},
      {"migrations_in_second_half",
       end_status.value("migrations_total", 0) - half_status.value("migrations_total", 0)},
      {"epoch", end_status.value("epoch", 0)},
      {"layers", per_layer},
      {"final_placement", {{"physical_to_logical_map", rows}}},
  };
  if (!keep) fs::remove_all(dir, ec);
  return out;
}

}  // namespace grace
