// Debian's real Prometheus against a live graced: it scrapes /metrics (histograms included),
// loads grace's alert rules, and every query of the Grafana dashboard and every rule evaluates
// on what it scraped; every grace_* series the dashboard and the rules name is one graced
// exports; and `promtool check metrics` accepts graced's exposition.
//
// Skips when /usr/bin/prometheus or /usr/bin/promtool is missing (apt-get install prometheus),
// except under CI=true, where that fails.
#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/local_cluster.h"
#include "tests/testing/child_process.h"
#include "tests/testing/run_command.h"
#include "tools/sim_agents.h"

namespace grace {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr const char* kPrometheus = "/usr/bin/prometheus";
constexpr const char* kPromtool = "/usr/bin/promtool";

template <typename F>
bool Eventually(F probe, int seconds) {
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < deadline) {
    if (probe()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return probe();
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Prometheus's answer to an instant query, or a null json when the request failed.
json Query(httplib::Client& prometheus, const std::string& expr) {
  auto res = prometheus.Get("/api/v1/query", httplib::Params{{"query", expr}}, httplib::Headers{});
  if (!res) return json();
  json body = json::parse(res->body, nullptr, false);
  return body.is_discarded() ? json() : body;
}

// The sample's value of the first series an instant query returned, or NaN.
double FirstValue(const json& answer) {
  if (!answer.is_object() || answer["status"] != "success") return std::nan("");
  const json& result = answer["data"]["result"];
  if (!result.is_array() || result.empty()) return std::nan("");
  return std::stod(result[0]["value"][1].get<std::string>());
}

// Every PromQL expression of the dashboard, with Grafana's variables replaced by values
// Prometheus accepts.
std::vector<std::string> DashboardExpressions(const json& dashboard) {
  std::vector<std::string> out;
  for (const json& panel : dashboard["panels"]) {
    if (!panel.contains("targets")) continue;
    for (const json& target : panel["targets"]) {
      std::string e = target["expr"];
      e = std::regex_replace(e, std::regex(R"(\$__rate_interval)"), "10s");
      e = std::regex_replace(e, std::regex(R"(\$(instance|layer))"), ".*");
      out.push_back(e);
    }
  }
  return out;
}

// The rules' expressions, read from the YAML's `expr:` lines (single-line or folded `>-`).
std::vector<std::string> RuleExpressions(const std::string& yaml) {
  std::vector<std::string> out;
  std::istringstream in(yaml);
  std::string line;
  std::string* folding = nullptr;
  size_t folded_indent = 0;
  while (std::getline(in, line)) {
    const size_t indent = line.find_first_not_of(' ');
    if (folding != nullptr) {
      if (indent != std::string::npos && indent > folded_indent) {
        *folding += " " + line.substr(indent);
        continue;
      }
      folding = nullptr;
    }
    if (indent == std::string::npos || line.compare(indent, 6, "expr: ") != 0) continue;
    const std::string value = line.substr(indent + 6);
    out.push_back(value == ">-" ? "" : value);
    if (value == ">-") {
      folding = &out.back();
      folded_indent = indent;
    }
  }
  return out;
}

// grace_* names in `text` (recording rules, grace:..., are not matched).
std::set<std::string> GraceNames(const std::string& text) {
  std::set<std::string> names;
  const std::regex name(R"(\bgrace_[a-z0-9_]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator();
       ++it) {
    names.insert(it->str());
  }
  return names;
}

// The metric families (# TYPE) and sample names (histograms' _bucket, _sum and _count) of an
// exposition.
std::set<std::string> ExportedNames(const std::string& exposition) {
  std::set<std::string> names;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      names.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (!line.empty() && line[0] != '#') {
      names.insert(line.substr(0, line.find_first_of("{ ")));
    }
  }
  return names;
}

class PrometheusScrapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* binary : {kPrometheus, kPromtool}) {
      if (fs::exists(binary)) continue;
      const char* ci = std::getenv("CI");
      if (ci != nullptr && std::string(ci) == "true") {
        FAIL() << binary << " not found (apt-get install prometheus; scripts/setup.sh)";
      }
      GTEST_SKIP() << binary << " not found: apt-get install prometheus (scripts/setup.sh)";
    }
    dir_ = fs::temp_directory_path() / ("grace_prometheus_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);  // logs stay when it failed
  }

  fs::path dir_;
};

TEST_F(PrometheusScrapeTest, ScrapesGracedAndEvaluatesTheDashboardAndRules) {
  const fs::path source = GRACE_SOURCE_DIR;
  const fs::path rules = source / "config/prometheus/grace-alerts.yml";
  const json dashboard =
      json::parse(ReadFile(source / "config/grafana/grace-dashboard.json"), nullptr, false);
  ASSERT_FALSE(dashboard.is_discarded()) << "config/grafana/grace-dashboard.json is not JSON";

  auto http_port = PickFreePort();
  auto agents_port = PickFreePort();
  auto prometheus_port = PickFreePort();
  ASSERT_TRUE(http_port.ok() && agents_port.ok() && prometheus_port.ok());
  const fs::path config = dir_ / "graced.toml";
  {
    std::ofstream f(config);
    f << "[daemon]\nhttp = \"127.0.0.1:" << *http_port
      << "\"\nagents = \"127.0.0.1:" << *agents_port << "\"\nstate_dir = \""
      << (dir_ / "state").string() << "\"\n"
      << "[agents]\nheartbeat_ms = 100\nreport_ms = 200\n"
      << "[topology]\nnodes = 2\ngpus_per_node = 2\nslots_per_gpu = 5\n"
      << "[model]\nnum_experts = 16\ntop_k = 4\nlayers = [0, 1]\nhidden = 64\nexpert_ffn = 32\n"
      << "[policy]\ninterval_s = 0.3\n";
  }
  testing::ChildProcess graced;
  ASSERT_TRUE(graced.Start({GRACED_BINARY, "--config", config.string()},
                           {"GRACE_CLUSTER_SECRET=prom-secret"}, (dir_ / "graced.log").string()));
  httplib::Client client("127.0.0.1", *http_port);
  ASSERT_TRUE(Eventually([&] { return client.Get("/healthz") != nullptr; }, 20))
      << "graced did not come up; see " << (dir_ / "graced.log");

  // Two simulated agents, so control rounds run and traffic is measured.
  SimAgentOptions sim;
  sim.daemon_port = *agents_port;
  sim.cluster_secret = "prom-secret";
  sim.topology.nodes = 2;
  sim.topology.gpus_per_node = 2;
  sim.topology.slots_per_gpu = 5;
  sim.num_layers = 2;
  sim.num_experts = 16;
  sim.top_k = 4;
  sim.tokens_per_step = 32;
  sim.steps_per_second = 20;
  sim.coactivation_pairs = 16;
  sim.hidden = 64;
  SimAgentFleet fleet(sim);
  ASSERT_TRUE(fleet.Start().ok());

  {
    std::ofstream f(dir_ / "prometheus.yml");
    f << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "rule_files:\n  - " << rules.string() << "\n"
      << "scrape_configs:\n  - job_name: graced\n    static_configs:\n"
      << "      - targets: ['127.0.0.1:" << *http_port << "']\n";
  }
  testing::ChildProcess prometheus;
  ASSERT_TRUE(prometheus.Start(
      {kPrometheus, "--config.file=" + (dir_ / "prometheus.yml").string(),
       "--storage.tsdb.path=" + (dir_ / "tsdb").string(),
       "--web.listen-address=127.0.0.1:" + std::to_string(*prometheus_port), "--log.level=warn"},
      {}, (dir_ / "prometheus.log").string()));
  httplib::Client prom("127.0.0.1", *prometheus_port);
  prom.set_read_timeout(5);

  // A successful scrape, and one after control rounds ran.
  ASSERT_TRUE(Eventually([&] { return FirstValue(Query(prom, "up{job=\"graced\"}")) == 1; }, 30))
      << "Prometheus did not scrape graced; see " << (dir_ / "prometheus.log");
  // The histograms are histograms to Prometheus: quantiles come out of their buckets, once a
  // few scrapes saw control rounds and requests (a scrape shows the requests before it).
  const std::string round_p99 =
      "histogram_quantile(0.99, sum by (le) "
      "(rate(grace_control_round_duration_seconds_bucket[5s])))";
  const std::string metrics_p99 =
      "histogram_quantile(0.99, sum by (le) (rate(grace_http_request_duration_seconds_bucket{"
      "route=\"/metrics\",method=\"GET\",code=\"2xx\"}[5s])))";
  ASSERT_TRUE(Eventually(
      [&] {
        return FirstValue(Query(prom, round_p99)) > 0 && FirstValue(Query(prom, metrics_p99)) > 0 &&
               FirstValue(Query(prom, "sum(grace_measured_tokens_total)")) > 0;
      },
      20))
      << "no control-round or /metrics quantile, or no measured traffic scraped:\n"
      << Query(prom, round_p99).dump() << "\n"
      << Query(prom, metrics_p99).dump();
  EXPECT_EQ(FirstValue(Query(prom, "grace_agents{state=\"up\"}")), 2);
  EXPECT_EQ(FirstValue(Query(prom, "count(grace_layer_imbalance)")), 2);

  // Prometheus loaded every rule, and each evaluates.
  auto rules_res = prom.Get("/api/v1/rules");
  ASSERT_TRUE(rules_res);
  const json loaded = json::parse(rules_res->body, nullptr, false);
  ASSERT_FALSE(loaded.is_discarded());
  size_t rule_count = 0;
  for (const json& group : loaded["data"]["groups"]) {
    for (const json& rule : group["rules"]) {
      ++rule_count;
      EXPECT_EQ(rule["health"], "ok") << rule["name"] << ": " << rule.value("lastError", "");
    }
  }
  const std::string rules_yaml = ReadFile(rules);
  const std::vector<std::string> rule_exprs = RuleExpressions(rules_yaml);
  EXPECT_EQ(rule_count, rule_exprs.size());
  EXPECT_GE(rule_count, 8u);

  // Every dashboard and rule expression is valid PromQL on the live data.
  std::vector<std::string> exprs = DashboardExpressions(dashboard);
  EXPECT_GE(exprs.size(), 20u);
  exprs.insert(exprs.end(), rule_exprs.begin(), rule_exprs.end());
  for (const std::string& e : exprs) {
    const json answer = Query(prom, e);
    EXPECT_EQ(answer.value("status", "no answer"), "success") << e << "\n" << answer.dump();
  }

  // Every grace_* series they name is one graced exports.
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  const std::set<std::string> exported = ExportedNames(metrics->body);
  std::set<std::string> named = GraceNames(dashboard.dump());
  named.merge(GraceNames(rules_yaml));
  EXPECT_GE(named.size(), 15u);
  for (const std::string& n : named) {
    EXPECT_TRUE(exported.count(n)) << n << " is not in graced's /metrics";
  }

  // promtool's parser and linter accept the exposition.
  {
    std::ofstream f(dir_ / "metrics.txt");
    f << metrics->body;
  }
  const testing::CommandRun lint = testing::RunCommand(
      std::string(kPromtool) + " check metrics < " + (dir_ / "metrics.txt").string());
  EXPECT_EQ(lint.exit_code, 0) << lint.out;

  fleet.Stop();
  prometheus.Stop();
  graced.Stop();
}

}  // namespace
}  // namespace grace
