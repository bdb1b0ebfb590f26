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

#include "agent/local_cluster.h"
#include "core/trace_import.h"
#include "tests/testing/child_process.h"
#include "tests/testing/real_traces.h"
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
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("grace_agents{state=\"up\"} 2"), std::string::npos);

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

}  // namespace
}  // namespace grace
