#include "bench/migration_graced_fault.h"

#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "agent/local_cluster.h"
#include "bench/live_bench.h"
#include "bench/migration_run.h"
#include "core/placement.h"
#include "migrate/migration_plan.h"
#include "tests/testing/byte_tamper_proxy.h"
#include "tests/testing/child_process.h"
#include "tests/testing/frame_proxy.h"

namespace grace {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kToken = "grace-fault-token";

// Polls `probe` every 20 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& probe, milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (!probe()) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

// graced's REST API on loopback, every call bounded.
class Api {
 public:
  explicit Api(int port) : http_("127.0.0.1", port) {
    http_.set_connection_timeout(1, 0);
    http_.set_read_timeout(5, 0);
  }
  std::optional<json> Get(const std::string& path) {
    auto res = http_.Get(path);
    if (!res || res->status != 200) return std::nullopt;
    json j = json::parse(res->body, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }
  // POST /api/v1/placement; returns the epoch it prepares.
  StatusOr<Epoch> Apply(const Placement& p, const Topology& topo) {
    auto res = http_.Post("/api/v1/placement", {{"Authorization", std::string("Bearer ") + kToken}},
                          PlacementToJson(p, topo), "application/json");
    if (!res) return Unavailable("POST /api/v1/placement: no answer");
    if (res->status != 202) {
      return FailedPrecondition("POST /api/v1/placement: " + std::to_string(res->status) + " " +
                                res->body);
    }
    json j = json::parse(res->body, nullptr, false);
    if (j.is_discarded() || !j.contains("epoch")) return Internal("202 without an epoch");
    return j["epoch"].get<Epoch>();
  }
  StatusOr<std::pair<Epoch, Placement>> Current() {
    auto res = http_.Get("/api/v1/placement");
    if (!res || res->status != 200) return Unavailable("GET /api/v1/placement failed");
    json j = json::parse(res->body, nullptr, false);
    if (j.is_discarded()) return Internal("GET /api/v1/placement: not JSON");
    // The answer is the placement JSON with the record's fields beside it.
    GRACE_ASSIGN_OR_RETURN(Placement p, PlacementFromJson(res->body, "GET /api/v1/placement"));
    return std::make_pair(j["epoch"].get<Epoch>(), std::move(p));
  }
  // True when `n` agents are up and every one of them serves `epoch` (any when 0) past `step`.
  bool AgentsAt(size_t n, Epoch epoch, uint64_t step) {
    auto j = Get("/api/v1/agents");
    if (!j) return false;
    last_agents_ = (*j)["agents"].dump();
    size_t ok = 0;
    for (const json& a : (*j)["agents"]) {
      if (a["state"] != "up") continue;
      if (epoch != 0 && a["epoch"].get<Epoch>() != epoch) return false;
      if (a["step"].get<uint64_t>() >= step) ++ok;
    }
    return ok == n;
  }
  // The value of an unlabelled sample on GET /metrics (nullopt when absent).
  std::optional<double> Metric(const std::string& name) {
    auto res = http_.Get("/metrics");
    if (!res || res->status != 200) return std::nullopt;
    const std::string line_start = "\n" + name + " ";
    const size_t at = ("\n" + res->body).find(line_start);
    if (at == std::string::npos) return std::nullopt;
    return std::strtod(res->body.c_str() + at + name.size(), nullptr);
  }
  // The agents of the last GET /api/v1/agents, for error messages.
  const std::string& last_agents() const { return last_agents_; }

 private:
  httplib::Client http_;
  std::string last_agents_ = "none";
};

struct Graced {
  std::string binary, config, log;
  std::vector<std::string> env;
  std::unique_ptr<testing::ChildProcess> process;

  Status Start(Api& api, milliseconds timeout) {
    process = std::make_unique<testing::ChildProcess>();
    if (!process->Start({binary, "--config", config}, env, log)) {
      return Unavailable("cannot start graced");
    }
    if (!Eventually([&] { return api.Get("/healthz").has_value(); }, timeout)) {
      return Unavailable("graced did not answer /healthz; see " + log);
    }
    return Status::Ok();
  }
};

Placement OtherPlacement(const Placement& p, const Topology& topo, int moves, std::mt19937& rng) {
  Placement next;
  do {
    next = RandomReplacement(p, topo, moves, rng);
  } while (next == p);
  return next;
}

}  // namespace

// graced for a case: its binary, log, environment, and a graced.toml in `dir` with fast agent
// timeouts and a policy that never decides on its own within the run (the case's migrations
// are applied through the API).
Status ConfigureGraced(const MigrationBenchOptions& o, const Topology& topo, const std::string& dir,
                       int http_port, int agents_port, AgentChannelTls tls, Graced* graced) {
  graced->binary = o.graced_binary.empty() ? FindGracedBinary() : o.graced_binary;
  graced->config = dir + "/graced.toml";
  graced->log = dir + "/graced.log";
  graced->env = {std::string("GRACE_API_TOKEN=") + kToken,
                 "GRACE_CLUSTER_SECRET=grace-test-secret"};
  std::ofstream f(graced->config);
  f << "[daemon]\nhttp = \"127.0.0.1:" << http_port << "\"\nagents = \"127.0.0.1:" << agents_port
    << "\"\nstate_dir = \"" << dir << "/state\"\n"
    << "[agents]\ntls = \"" << AgentChannelTlsName(tls) << "\"\n"
    << "heartbeat_ms = 20\nreport_ms = 200\nlost_after_ms = 800\n"
    << "ready_timeout_ms = 4000\nswitch_timeout_ms = 1500\n"
    << "[topology]\nnodes = " << topo.nodes << "\ngpus_per_node = " << topo.gpus_per_node
    << "\nslots_per_gpu = " << topo.slots_per_gpu << "\n[model]\nnum_experts = " << o.experts
    << "\ntop_k = " << o.top_k << "\nlayers = [";
  for (int l = 0; l < o.layers; ++l) f << (l ? ", " : "") << l;
  f << "]\nhidden = " << o.hidden << "\nexpert_ffn = " << o.ffn
    << "\n[policy]\ninterval_s = 3600\n";
  if (!f) return Unavailable(graced->config + ": cannot write");
  return Status::Ok();
}

// Starts graced and then the agents, and waits until every agent has joined and served half a
// second of steps.
Status StartAndJoin(const MigrationBenchOptions& o, const RunSetup& setup, Api& api, Graced* graced,
                    Cluster* cluster) {
  GRACE_RETURN_IF_ERROR(graced->Start(api, o.timeout));
  GRACE_RETURN_IF_ERROR(cluster->Start(o.agent_binary, setup));
  const size_t agents = setup.configs.size();
  const uint64_t warm_step = static_cast<uint64_t>(o.steps_per_second / 2);
  if (!Eventually([&] { return api.AgentsAt(agents, 0, warm_step); }, o.timeout)) {
    return Unavailable("the agents did not join graced; see " + graced->log);
  }
  return Status::Ok();
}

StatusOr<json> RunGracedKilledBetweenCommits(const MigrationBenchOptions& o, const Topology& topo) {
  using Action = testing::FrameProxy::Action;
  MigrationBenchOptions k = o;
  // Plaintext on both sides, on purpose: the FrameProxy between them reads and rules on
  // frames, which TLS would (rightly) hide from it.
  k.agent_tls = AgentChannelTls::kOff;
  // Room for the migration, graced's restart, the agents' return and one more migration.
  k.steps = std::max(o.steps, static_cast<int>(10 * o.steps_per_second));
  const std::string dir = o.work_dir + "/fault_" + kGracedKilledBetweenCommits;
  GRACE_ASSIGN_OR_RETURN(int http_port, PickFreePort());
  GRACE_ASSIGN_OR_RETURN(int agents_port, PickFreePort());
  testing::FrameProxy proxy(agents_port);
  GRACE_RETURN_IF_ERROR(proxy.Start());
  GRACE_ASSIGN_OR_RETURN(RunSetup setup, WriteConfigs(k, topo, dir, proxy.port(), 0));

  Graced graced;
  GRACE_RETURN_IF_ERROR(
      ConfigureGraced(o, topo, dir, http_port, agents_port, AgentChannelTls::kOff, &graced));
  Api api(http_port);
  Cluster cluster;
  GRACE_RETURN_IF_ERROR(StartAndJoin(o, setup, api, &graced, &cluster));
  const size_t agents = setup.configs.size();

  // COMMIT reaches agents 0 and 1; graced dies before 2 and 3 get theirs.
  std::mt19937 rng(o.seed + 11);
  GRACE_ASSIGN_OR_RETURN(auto before, api.Current());
  proxy.AddRule({true, MessageType::kCommit, "agent2", 1, Action::kDelay, -1});
  proxy.AddRule({true, MessageType::kCommit, "agent3", 1, Action::kDelay, -1});
  GRACE_ASSIGN_OR_RETURN(
      Epoch prepared, api.Apply(OtherPlacement(before.second, topo, o.moves_per_layer, rng), topo));
  if (!Eventually([&] { return proxy.fired() >= 2; }, milliseconds(8000))) {
    return Unavailable("no COMMIT of epoch " + std::to_string(prepared) + " within 8 s; see " +
                       graced.log);
  }
  graced.process->Kill(SIGKILL);
  proxy.Cut();  // the held COMMITs die with their connections
  GRACE_RETURN_IF_ERROR(graced.Start(api, o.timeout));
  if (!Eventually([&] { return api.AgentsAt(agents, 0, 0); }, o.timeout)) {
    return Unavailable("the agents did not rejoin the restarted graced (last seen: " +
                       api.last_agents() + "); see " + graced.log);
  }
  GRACE_ASSIGN_OR_RETURN(auto restarted, api.Current());

  // The next migration must start and switch on every agent: nothing is left blocked.
  bool next_switched = false;
  std::string next_error;
  StatusOr<Epoch> next =
      api.Apply(OtherPlacement(restarted.second, topo, o.moves_per_layer, rng), topo);
  if (next.ok()) {
    next_switched = Eventually([&] { return api.AgentsAt(agents, *next, 0); }, o.timeout);
    if (!next_switched) next_error = "epoch " + std::to_string(*next) + " never served everywhere";
  } else {
    next_error = next.status().message();
  }
  GRACE_RETURN_IF_ERROR(cluster.Wait(o.timeout));
  graced.process->Kill(SIGTERM);
  GRACE_ASSIGN_OR_RETURN(RunCheck rc, CheckRun(k, topo, setup.dir));
  const bool committed = restarted.first >= prepared;
  return json{{"case", kGracedKilledBetweenCommits},
              {"outcome", committed ? "committed" : "aborted"},
              {"mixed_epoch_steps", rc.mixed_epoch_steps},
              {"tokens_lost", rc.tokens_lost + rc.tokens_duplicated},
              {"checksum_mismatches", rc.checksum_mismatches + rc.token_mismatches},
              {"epoch_before", before.first},
              {"epoch_prepared", prepared},
              {"epoch_after_restart", restarted.first},
              {"epochs_served", std::set<Epoch>(rc.step_epoch.begin(), rc.step_epoch.end())},
              {"next_migration_switched", next_switched},
              {"next_migration", next_error}};
}

StatusOr<json> RunWeightsCorruptedInFlight(const MigrationBenchOptions& o, const Topology& topo) {
  MigrationBenchOptions k = o;
  // Room for the aborted migration and one more.
  k.steps = std::max(o.steps, static_cast<int>(8 * o.steps_per_second));
  const std::string dir = o.work_dir + "/fault_" + kWeightsCorruptedInFlight;
  GRACE_ASSIGN_OR_RETURN(int http_port, PickFreePort());
  GRACE_ASSIGN_OR_RETURN(int agents_port, PickFreePort());
  GRACE_ASSIGN_OR_RETURN(RunSetup setup, WriteConfigs(k, topo, dir, agents_port, 0));
  // Rank 1 reaches rank 0's migration rendezvous (its 8 ports, one per epoch modulo 8) through
  // the proxy, so every byte between ranks 0 and 1 of the migration mesh passes it. Rank 0 ->
  // rank 1 carries the mesh handshake (nonce, proof, the 4-rank address table: 384 bytes), then
  // each message's 8-byte length and payload: byte 4096 lies in the first chunk (16 KiB) of the
  // first expert rank 0 sends to rank 1.
  std::string agent1;
  {
    std::ifstream in(setup.configs[1]);
    std::stringstream text;
    text << in.rdbuf();
    agent1 = text.str();
  }
  const std::string key = "[migration]\nrendezvous = \"127.0.0.1:";
  const size_t at = agent1.find(key);
  if (at == std::string::npos) return Internal(setup.configs[1] + ": no [migration] rendezvous");
  const int mesh_port = std::atoi(agent1.c_str() + at + key.size());
  GRACE_ASSIGN_OR_RETURN(int proxy_port, PickFreePortRange(8));
  std::vector<testing::ByteTamperProxy::Route> routes;
  for (int i = 0; i < 8; ++i) routes.push_back({proxy_port + i, mesh_port + i});
  testing::ByteTamperProxy proxy(routes, 4096);
  GRACE_RETURN_IF_ERROR(proxy.Start());
  agent1.replace(at + key.size(), std::to_string(mesh_port).size(), std::to_string(proxy_port));
  {
    std::ofstream out(setup.configs[1]);
    out << agent1;
    if (!out) return Unavailable(setup.configs[1] + ": cannot write");
  }

  Graced graced;
  GRACE_RETURN_IF_ERROR(
      ConfigureGraced(o, topo, dir, http_port, agents_port, AgentChannelTls::kPsk, &graced));
  Api api(http_port);
  Cluster cluster;
  GRACE_RETURN_IF_ERROR(StartAndJoin(o, setup, api, &graced, &cluster));
  const size_t agents = setup.configs.size();

  // A re-placement in which rank 0 sends rank 1 an expert (graced plans as PlanMigration does).
  std::mt19937 rng(o.seed + 13);
  GRACE_ASSIGN_OR_RETURN(auto before, api.Current());
  Placement next;
  for (int tries = 0;; ++tries) {
    if (tries == 1000) return Internal("no re-placement moves an expert from rank 0 to rank 1");
    next = OtherPlacement(before.second, topo, o.moves_per_layer, rng);
    GRACE_ASSIGN_OR_RETURN(MigrationPlan plan, PlanMigration(topo, before.second, next, 1));
    if (std::any_of(plan.transfers.begin(), plan.transfers.end(),
                    [](const ExpertTransfer& t) { return t.src_rank == 0 && t.dst_rank == 1; })) {
      break;
    }
  }
  GRACE_ASSIGN_OR_RETURN(Epoch prepared, api.Apply(next, topo));
  const bool aborted = Eventually(
      [&] { return api.Metric("grace_migrations_aborted_total").value_or(0) >= 1; }, o.timeout);
  // The sender's ABORT (its mesh closed by the failed rank) can reach graced before the failed
  // rank's own, so the migration may be aborted a moment before the digest failure is counted.
  (void)Eventually(
      [&] { return api.Metric("grace_migration_integrity_failures_total").value_or(0) >= 1; },
      std::chrono::milliseconds(5000));
  const double integrity_failures =
      api.Metric("grace_migration_integrity_failures_total").value_or(-1);
  GRACE_ASSIGN_OR_RETURN(auto after_abort, api.Current());

  // The next migration must start and switch on every agent: nothing is left blocked.
  bool next_switched = false;
  std::string next_error;
  StatusOr<Epoch> later =
      api.Apply(OtherPlacement(after_abort.second, topo, o.moves_per_layer, rng), topo);
  if (later.ok()) {
    next_switched = Eventually([&] { return api.AgentsAt(agents, *later, 0); }, o.timeout);
    if (!next_switched) next_error = "epoch " + std::to_string(*later) + " never served everywhere";
  } else {
    next_error = later.status().message();
  }
  GRACE_RETURN_IF_ERROR(cluster.Wait(o.timeout));
  graced.process->Kill(SIGTERM);
  proxy.Stop();
  GRACE_ASSIGN_OR_RETURN(RunCheck rc, CheckRun(k, topo, setup.dir));
  // graced logs the agent's failure once, with its reason (layer, expert, source rank).
  int log_lines = 0;
  std::string logged;
  {
    std::ifstream in(graced.log);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("failed their digest") == std::string::npos) continue;
      ++log_lines;
      logged = line;
    }
  }
  // What every agent's failed copy said (migrations.jsonl), for a failure's message.
  std::vector<std::string> failures;
  for (size_t a = 0; a < agents; ++a) {
    std::ifstream in(dir + "/agent" + std::to_string(a) + ".migrations.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("failed\"") != std::string::npos) failures.push_back(line);
    }
  }
  const std::set<Epoch> served(rc.step_epoch.begin(), rc.step_epoch.end());
  return json{{"case", kWeightsCorruptedInFlight},
              {"outcome", aborted && after_abort.first < prepared ? "aborted" : "committed"},
              {"tampered", proxy.tampered()},
              {"integrity_failures", integrity_failures},
              {"graced_log_lines", log_lines},
              {"graced_log", logged},
              {"agent_outcomes", rc.outcomes},
              {"agent_failures", failures},
              {"mixed_epoch_steps", rc.mixed_epoch_steps},
              {"tokens_lost", rc.tokens_lost + rc.tokens_duplicated},
              {"checksum_mismatches", rc.checksum_mismatches + rc.token_mismatches},
              {"epoch_prepared", prepared},
              {"prepared_epoch_served", served.count(prepared) > 0},
              {"epochs_served", served},
              {"next_migration_switched", next_switched},
              {"next_migration", next_error}};
}

}  // namespace grace
