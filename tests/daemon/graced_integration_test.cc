// graced end to end: the real daemon process, simulated agents replaying the drift of real
// routing data (OLMoE-1B-7B expert counts of the arxiv, book and c4 domains), the REST API, and
// a SIGKILL followed by a restart that must find the same epoch, placement and history.
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/agent_config.h"
#include "agent/local_cluster.h"
#include "agent/replay.h"
#include "core/trace_import.h"
#include "tests/testing/child_process.h"
#include "tests/testing/real_traces.h"
#include "tests/testing/run_command.h"
#include "tools/sim_agents.h"

namespace grace {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Polls `probe` until it returns true or `seconds` pass: processes on loopback give no other
// signal to wait on.
template <typename F>
bool Eventually(F probe, int seconds) {
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < deadline) {
    if (probe()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return probe();
}

std::optional<json> GetJson(httplib::Client& c, const std::string& path) {
  auto res = c.Get(path);
  if (!res || res->status != 200) return std::nullopt;
  return json::parse(res->body, nullptr, false);
}

TEST(GracedIntegrationTest, AWebRootThatIsNotADirectoryIsANamedError) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("graced_webroot_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string config = (dir / "graced.toml").string();
  std::ofstream(dir / "index.html") << "not a directory";
  std::ofstream(config) << "[daemon]\nweb_root = \"" << (dir / "index.html").string()
                        << "\"\ncluster_secret = \"s\"\nstate_dir = \"" << dir.string()
                        << "\"\nhttp = \"127.0.0.1:0\"\nagents = \"127.0.0.1:0\"\n";
  const auto run = grace::testing::RunCommand("timeout 20 " + std::string(GRACED_BINARY) +
                                              " --config " + config);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.out.find("web_root " + (dir / "index.html").string() + ": not a directory"),
            std::string::npos)
      << run.out;
  std::filesystem::remove_all(dir);
}

TEST(GracedIntegrationTest, AConfigThatIsNotARegularFileIsRefusedBeforeAnythingStarts) {
  // A directory reads as an empty file: graced would run on every default, binding the default
  // ports and writing /var/lib/grace. It must stop at once, naming the path.
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("graced_configdir_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto run = grace::testing::RunCommand("timeout 20 " + std::string(GRACED_BINARY) +
                                              " --config " + dir.string());
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.out.find("--config " + dir.string() + ": not a regular file"), std::string::npos)
      << run.out;
  std::filesystem::remove_all(dir);
}

TEST(GracedIntegrationTest, OffLoopbackWithoutTlsGracedRefusesToStart) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("graced_notls_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  const std::string graced = "GRACE_CLUSTER_SECRET=s timeout 20 " + std::string(GRACED_BINARY) +
                             " --state-dir " + dir.string() + " --agents 127.0.0.1:0";
  // Without the check graced would serve plaintext on every interface until `timeout` (124).
  auto run = grace::testing::RunCommand(graced + " --http 0.0.0.0:" + std::to_string(*port));
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.out.find("[http].tls_cert_file: the REST API listens on 0.0.0.0"),
            std::string::npos)
      << run.out;

  // A certificate file that is not there is named, before anything listens.
  const std::string config = (dir / "graced.toml").string();
  const std::string missing = (dir / "missing.pem").string();
  std::ofstream(config) << "[http]\ntls_cert_file = \"" << missing << "\"\ntls_key_file = \""
                        << missing << "\"\n";
  run = grace::testing::RunCommand(graced + " --http 127.0.0.1:0 --config " + config);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.out.find("TLS certificate file " + missing + ": no such file"), std::string::npos)
      << run.out;
  std::filesystem::remove_all(dir);
}

TEST(GracedIntegrationTest, DriftLeadsToMigrationsThatSurviveSigkill) {
  GRACE_REQUIRE_REAL_TRACES(traces);
  // Real per-layer loads, one phase per text domain.
  std::vector<std::vector<std::vector<double>>> phases;
  std::vector<LayerId> layer_ids;
  for (const char* domain : {"arxiv", "book", "c4"}) {
    auto t = ImportTraces(
        {traces + "/olmoe-and-mixtral-domain-counts/olmoe__expert_counts__" + domain + ".json"});
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    phases.push_back(t->LayerLoads());
    layer_ids = t->info.layer_ids;
  }

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("graced_it_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto http_port = PickFreePort();
  auto agents_port = PickFreePort();
  ASSERT_TRUE(http_port.ok() && agents_port.ok());
  const std::string config = (dir / "graced.toml").string();
  {
    std::ofstream f(config);
    f << "[daemon]\nhttp = \"127.0.0.1:" << *http_port
      << "\"\nagents = \"127.0.0.1:" << *agents_port << "\"\nstate_dir = \""
      << (dir / "state").string() << "\"\n"
      << "[agents]\nheartbeat_ms = 100\nreport_ms = 200\nlost_after_ms = 3000\n"
      << "[topology]\nnodes = 2\ngpus_per_node = 2\nslots_per_gpu = 18\n"
      << "[model]\nnum_experts = 64\ntop_k = 8\nlayers = [0, 7, 15]\nhidden = 2048\n"
      << "expert_ffn = 1024\n"
      << "[policy]\ninterval_s = 0.4\ncooldown_s = 0\nhorizon_intervals = 50\n"
      << "min_gain_ms = 0.01\n";
  }
  const std::vector<std::string> env = {"GRACE_API_TOKEN=it-token",
                                        "GRACE_CLUSTER_SECRET=it-secret"};
  const std::string log = (dir / "graced.log").string();
  testing::ChildProcess graced;
  ASSERT_TRUE(graced.Start({GRACED_BINARY, "--config", config}, env, log));

  httplib::Client client("127.0.0.1", *http_port);
  ASSERT_TRUE(Eventually([&] { return GetJson(client, "/healthz").has_value(); }, 30))
      << "graced did not come up; see " << log;
  auto first = GetJson(client, "/api/v1/placement");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ((*first)["epoch"], 1);

  SimAgentOptions sim;
  sim.daemon_port = *agents_port;
  sim.cluster_secret = "it-secret";
  sim.topology.nodes = 2;
  sim.topology.gpus_per_node = 2;
  sim.topology.slots_per_gpu = 18;
  sim.num_layers = 3;
  sim.num_experts = 64;
  sim.top_k = 8;
  sim.tokens_per_step = 512;
  sim.steps_per_second = 40;
  sim.drift_every_reports = 10;  // a new domain every ~2 s
  sim.phase_loads = phases;
  SimAgentFleet fleet(sim);
  ASSERT_TRUE(fleet.Start().ok());

  // The drift makes graced decide, migrate and switch epochs.
  json placement;
  ASSERT_TRUE(Eventually(
      [&] {
        auto p = GetJson(client, "/api/v1/placement");
        if (!p || (*p)["epoch"].get<int>() < 2) return false;
        placement = *p;
        return fleet.Stats().newest_epoch >= 2;  // the agents switched too
      },
      90))
      << "no epoch switch; see " << log;
  EXPECT_EQ(fleet.Stats().connected, 2);
  auto decisions = GetJson(client, "/api/v1/decisions");
  ASSERT_TRUE(decisions.has_value());
  ASSERT_FALSE((*decisions)["items"].empty());
  bool linked = false;
  for (const json& d : (*decisions)["items"]) linked = linked || !d["epoch"].is_null();
  EXPECT_TRUE(linked) << "no decision names the epoch it produced";
  // Once graced has every SWITCHED, the migration's PREPARE-to-switch time is in its histogram.
  const std::string switched_count = "grace_migration_prepare_to_switch_seconds_count ";
  EXPECT_TRUE(Eventually(
      [&] {
        auto m = client.Get("/metrics");
        return m && m->body.find(switched_count) != std::string::npos &&
               m->body.find(switched_count + "0\n") == std::string::npos;
      },
      10))
      << "no completed migration in grace_migration_prepare_to_switch_seconds";
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("grace_agents{state=\"up\"} 2"), std::string::npos);
  // The simulated agents' co-activation and traffic sections were all accepted.
  for (const char* section : {"coactivation", "traffic"}) {
    EXPECT_NE(metrics->body.find("grace_load_report_sections_refused_total{section=\"" +
                                 std::string(section) + "\"} 0"),
              std::string::npos)
        << section;
  }

  // SIGKILL, restart, and everything committed is still there.
  fleet.Stop();
  const int epoch = placement["epoch"];
  const size_t decision_count = (*decisions)["items"].size();
  graced.Kill(SIGKILL);
  testing::ChildProcess again;
  ASSERT_TRUE(again.Start({GRACED_BINARY, "--config", config}, env, log));
  ASSERT_TRUE(Eventually([&] { return GetJson(client, "/healthz").has_value(); }, 30));
  auto restored = GetJson(client, "/api/v1/placement");
  ASSERT_TRUE(restored.has_value());
  EXPECT_GE((*restored)["epoch"].get<int>(), epoch);
  auto at_epoch = GetJson(client, "/api/v1/placements/" + std::to_string(epoch));
  ASSERT_TRUE(at_epoch.has_value());
  EXPECT_EQ((*at_epoch)["physical_to_logical_map"], placement["physical_to_logical_map"]);
  auto decisions_after = GetJson(client, "/api/v1/decisions?limit=1000");
  ASSERT_TRUE(decisions_after.has_value());
  EXPECT_GE((*decisions_after)["items"].size(), decision_count);
  again.Kill(SIGTERM);
  if (!HasFailure()) std::filesystem::remove_all(dir);  // keep graced.log when something failed
}

// Two real agents (2 CPU ranks each, in this process) replay generated tokens against the real
// graced: every report carries co-activation pairs and the dispatch's traffic, and graced's
// totals add up to every token the agents ran.
TEST(GracedIntegrationTest, RealAgentsSendCoactivationAndMeasuredTraffic) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("graced_live_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto http_port = PickFreePort();
  auto agents_port = PickFreePort();
  auto rendezvous_port = PickFreePort();
  auto migration_port = PickFreePortRange(8);
  ASSERT_TRUE(http_port.ok() && agents_port.ok() && rendezvous_port.ok() && migration_port.ok());
  const std::string config = (dir / "graced.toml").string();
  {
    std::ofstream f(config);
    f << "[daemon]\nhttp = \"127.0.0.1:" << *http_port
      << "\"\nagents = \"127.0.0.1:" << *agents_port << "\"\nstate_dir = \""
      << (dir / "state").string() << "\"\n"
      << "[agents]\nheartbeat_ms = 100\nreport_ms = 200\nlost_after_ms = 5000\n"
      << "[topology]\nnodes = 2\ngpus_per_node = 2\nslots_per_gpu = 5\n"
      << "[model]\nnum_experts = 16\ntop_k = 4\nlayers = [0, 1]\nhidden = 16\n"
      << "expert_ffn = 8\n"
      << "[policy]\ninterval_s = 0.5\nmin_gain_ms = 1e9\n";  // observe, never migrate
  }
  const std::string log = (dir / "graced.log").string();
  testing::ChildProcess graced;
  ASSERT_TRUE(graced.Start({GRACED_BINARY, "--config", config},
                           {"GRACE_API_TOKEN=it-token", "GRACE_CLUSTER_SECRET=it-secret"}, log));
  httplib::Client client("127.0.0.1", *http_port);
  ASSERT_TRUE(Eventually([&] { return GetJson(client, "/healthz").has_value(); }, 30))
      << "graced did not come up; see " << log;

  const int steps = 30, tokens_per_rank = 16, top_k = 4;
  std::vector<Status> results(2);
  std::vector<std::thread> agents;
  for (int a = 0; a < 2; ++a) {
    const std::string out = (dir / ("agent" + std::to_string(a))).string();
    std::filesystem::create_directories(out);
    const std::string text =
        "[cluster]\nnodes = 2\nranks_per_node = 2\nslots_per_rank = 5\n"
        "[agent]\nfirst_rank = " +
        std::to_string(2 * a) + "\nlocal_ranks = 2\n[transport]\nrendezvous = \"127.0.0.1:" +
        std::to_string(*rendezvous_port) +
        "\"\n[model]\nexperts = 16\ntop_k = 4\nhidden = 16\nffn = 8\nlayers = 2\n"
        "[replay]\nsteps = " +
        std::to_string(steps) + "\ntokens_per_rank = " + std::to_string(tokens_per_rank) +
        "\nsteps_per_second = 20\ncoactivation_sample_every = 2\n"
        "coactivation_max_pairs = 8\n[daemon]\naddress = \"127.0.0.1:" +
        std::to_string(*agents_port) + "\"\ncluster_secret = \"it-secret\"\nagent_id = \"node" +
        std::to_string(a) +
        "\"\n[migration]\nrendezvous = \"127.0.0.1:" + std::to_string(*migration_port) +
        "\"\n[output]\ndir = \"" + out + "\"\n";
    auto c = ParseAgentConfig(text, "agent" + std::to_string(a) + ".toml");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    agents.emplace_back([&results, a, c = *c] { results[a] = RunAgent(c); });
  }
  for (std::thread& t : agents) t.join();
  for (const Status& s : results) ASSERT_TRUE(s.ok()) << s.ToString();

  // Every token of every step reached graced's totals (the agents' last report included).
  const uint64_t tokens = static_cast<uint64_t>(steps) * tokens_per_rank * 4;
  json traffic;
  ASSERT_TRUE(Eventually(
      [&] {
        auto t = GetJson(client, "/api/v1/traffic");
        if (!t || (*t)["layers"].size() != 2) return false;
        traffic = *t;
        return traffic["layers"][1]["tokens"].get<uint64_t>() == tokens;
      },
      30))
      << traffic.dump();
  for (const json& l : traffic["layers"]) {
    EXPECT_EQ(l["tokens"].get<uint64_t>(), tokens);
    uint64_t pairs = 0;
    for (const json& v : l["rank_load"]) pairs += v.get<uint64_t>();
    EXPECT_EQ(pairs, tokens * top_k);  // every (token, expert) pair computed once
    EXPECT_GT(l["cross_node_sends"].get<uint64_t>(), 0u);
    EXPECT_LE(l["cross_node_sends"].get<uint64_t>(), l["remote_sends"].get<uint64_t>());
    EXPECT_EQ(l["cross_node_bytes"].get<uint64_t>(),
              l["cross_node_sends"].get<uint64_t>() * 16 * sizeof(float));
  }
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  const std::string& m = metrics->body;
  auto counter = [&](const std::string& name) -> uint64_t {
    const size_t at = m.find("\n" + name + " ");
    return at == std::string::npos ? 0 : std::stoull(m.substr(at + name.size() + 2));
  };
  const uint64_t pairs = counter("grace_coactivation_pairs_total");
  EXPECT_GT(pairs, 0u) << "graced received no co-activation pairs";
  EXPECT_LE(pairs, counter("grace_load_reports_total") * 2 * 8);  // max_pairs per layer
  // Token ids of a rank's step are consecutive from a multiple of 16, so every other token is
  // sampled: per layer half the tokens, 4 distinct experts each, 6 pairs a token.
  EXPECT_EQ(counter("grace_coactivation_sampled_mass_total"), tokens / 2 * 6 * 2);
  EXPECT_GT(counter("grace_coactivation_dropped_mass_total"), 0u);  // 120 pairs, 8 sent
  EXPECT_NE(m.find("grace_load_report_sections_refused_total{section=\"coactivation\"} 0"),
            std::string::npos);
  EXPECT_NE(m.find("grace_measured_tokens_total{layer=\"1\"} " + std::to_string(tokens)),
            std::string::npos);
  graced.Kill(SIGTERM);
  if (!HasFailure()) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace grace
