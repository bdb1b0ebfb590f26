#include "daemon/rest_api.h"

#include <httplib.h>

#include <mutex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testing/raw_client.h"

namespace grace {
namespace {

using nlohmann::json;

class FakeControlPlane : public ControlPlane {
 public:
  FakeControlPlane() : store_(std::move(OpenSqliteHistoryStore(":memory:")).value()) {}

  PolicySettings Policy() override {
    std::lock_guard<std::mutex> lock(mu_);
    return policy_;
  }
  Status SetPolicy(const PolicySettings& s, const std::string& who) override {
    std::lock_guard<std::mutex> lock(mu_);
    policy_ = s;
    last_who_ = who;
    return Status::Ok();
  }
  Status RequestReplan(const std::string&) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++replans_;
    return Status::Ok();
  }
  StatusOr<Epoch> ApplyPlacement(const std::string& json, const std::string&) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (json == "busy") return FailedPrecondition("a migration to epoch 4 is in progress");
    if (json != "{}") return InvalidArgument("placement: not grace's placement JSON");
    applied_ = json;
    return Epoch{4};
  }
  void SetPaused(bool paused, const std::string&) override {
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = paused;
  }
  std::vector<AgentStatus> Agents() override { return {{"node0", 0, {0, 1}, "up", 3, 40, 5}}; }
  DaemonMetrics Metrics() override {
    std::lock_guard<std::mutex> lock(mu_);
    DaemonMetrics m;
    m.epoch = 3;
    m.paused = paused_;
    m.layer_ids = {0, 8};
    m.layer_imbalance = {1.25, 1.5};
    m.layer_cross_node_sends = {0.5, 0.75};
    m.agents_up = 1;
    m.measured_total = Traffic().total;
    m.measured_window = Traffic().window;
    for (auto* layers : {&m.measured_total, &m.measured_window}) {
      for (MeasuredLayerTraffic& l : *layers) l.rank_load.clear();
    }
    return m;
  }
  TrafficSnapshot Traffic() override {
    TrafficSnapshot t;
    t.epoch = 3;
    t.layer_ids = {0, 8};
    t.total = {{100, 30, 90, 40, 30 * 64, 40 * 64, {120, 80}, 1.2},
               {100, 10, 20, 5, 10 * 64, 5 * 64, {100, 100}, 1.0}};
    t.window = {{10, 3, 9, 4, 3 * 64, 4 * 64, {15, 5}, 1.5}, {10, 1, 2, 1, 64, 64, {10, 10}, 1.0}};
    return t;
  }
  std::vector<IntervalSnapshot> Trends(size_t limit) override {
    std::vector<IntervalSnapshot> all = {{1000, 2, {1.5, 1.25}, {0.5, 0.5}},
                                         {2000, 3, {1.25, 1.5}, {0.5, 0.75}}};
    if (limit < all.size()) all.erase(all.begin(), all.end() - static_cast<long>(limit));
    return all;
  }
  std::vector<ForecastSample> ForecastHistory(int layer, size_t) override {
    if (layer != 1) return {};
    return {{1000, {4, 2}, {}}, {2000, {3, 3}, {3.5f, 2.5f}}};
  }
  void WithHistory(const std::function<void(HistoryStore&)>& fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    fn(*store_);
  }

  std::mutex mu_;
  std::unique_ptr<HistoryStore> store_;
  PolicySettings policy_;
  std::string last_who_;
  int replans_ = 0;
  bool paused_ = false;
  std::string applied_;
};

class RestApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RestApiOptions opt;
    opt.port = 0;
    opt.api_token = "t0ken";
    api_ = std::make_unique<RestApi>(control_, opt);
    ASSERT_TRUE(api_->Start().ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", api_->port());
  }
  void TearDown() override { api_->Stop(); }

  httplib::Headers Auth() { return {{"Authorization", "Bearer t0ken"}}; }

  FakeControlPlane control_;
  std::unique_ptr<RestApi> api_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(RestApiTest, ReadsAreOpenAndCarryCsp) {
  auto res = client_->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Security-Policy").find("script-src 'self'"),
            std::string::npos);
  res = client_->Get("/api/v1/policy");
  ASSERT_TRUE(res);
  EXPECT_EQ(json::parse(res->body)["forecast_model"], "auto");
  res = client_->Get("/api/v1/agents");
  EXPECT_EQ(json::parse(res->body)["agents"][0]["agent_id"], "node0");
}

TEST_F(RestApiTest, MutatingCallsNeedTheToken) {
  auto res = client_->Put("/api/v1/policy", R"({"cooldown_s": 10})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  httplib::Headers wrong = {{"Authorization", "Bearer nope"}};
  res = client_->Post("/api/v1/pause", wrong, "", "application/json");
  EXPECT_EQ(res->status, 401);
  EXPECT_FALSE(control_.paused_);
  res = client_->Post("/api/v1/pause", Auth(), "", "application/json");
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(control_.paused_);
  res = client_->Post("/api/v1/replan", Auth(), "", "application/json");
  EXPECT_EQ(res->status, 202);
  EXPECT_EQ(control_.replans_, 1);
}

TEST_F(RestApiTest, AnAppliedPlacementStartsAMigrationOrNamesWhyNot) {
  auto res = client_->Post("/api/v1/placement", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_TRUE(control_.applied_.empty());
  res = client_->Post("/api/v1/placement", Auth(), "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 202);
  EXPECT_EQ(json::parse(res->body)["epoch"], 4);
  EXPECT_EQ(control_.applied_, "{}");
  res = client_->Post("/api/v1/placement", Auth(), "[1]", "application/json");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["field"], "body");
  res = client_->Post("/api/v1/placement", Auth(), "busy", "application/json");
  EXPECT_EQ(res->status, 409);
  EXPECT_NE(json::parse(res->body)["error"].get<std::string>().find("in progress"),
            std::string::npos);
}

TEST_F(RestApiTest, AHugeBodyIsRefusedBeforeItIsRead) {
  // The token is checked, and the size, from the head: neither waits for the gigabyte.
  testing::RawClient anon(api_->port());
  ASSERT_TRUE(
      anon.Send("PUT /api/v1/policy HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n{"));
  EXPECT_EQ(anon.ReadStatus(), 401);
  testing::RawClient big(api_->port());
  ASSERT_TRUE(
      big.Send("PUT /api/v1/policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\n"
               "Content-Length: 1000000000\r\n\r\n{"));
  EXPECT_EQ(big.ReadStatus(), 413);
}

TEST_F(RestApiTest, IdleAndSlowDripConnectionsDoNotStarveHealthz) {
  std::vector<std::unique_ptr<testing::RawClient>> held;
  for (int i = 0; i < 200; ++i) held.push_back(std::make_unique<testing::RawClient>(api_->port()));
  for (int i = 0; i < 8; ++i) {
    auto drip = std::make_unique<testing::RawClient>(api_->port());
    ASSERT_TRUE(drip->Send("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
    held.push_back(std::move(drip));
  }
  client_->set_read_timeout(20, 0);
  for (int i = 0; i < 10; ++i) {
    auto res = client_->Get("/healthz");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
  }
}

TEST_F(RestApiTest, ASecondServerOnTheSamePortFailsNamingIt) {
  RestApiOptions opt;
  opt.port = api_->port();
  RestApi second(control_, opt);
  Status s = second.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(":" + std::to_string(api_->port())), std::string::npos);
  EXPECT_NE(s.message().find("in use"), std::string::npos) << s.message();
}

TEST_F(RestApiTest, PolicyPutValidatesAndNamesTheField) {
  auto res = client_->Put("/api/v1/policy", Auth(), R"({"cooldown_s": -5})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  json body = json::parse(res->body);
  EXPECT_EQ(body["field"], "cooldown_s");
  EXPECT_NE(body["error"].get<std::string>().find("allowed range [0, 86400]"), std::string::npos);
  res =
      client_->Put("/api/v1/policy", Auth(), R"({"forecast_model": "magic"})", "application/json");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["field"], "forecast_model");
  res = client_->Put("/api/v1/policy", Auth(), R"({"bogus": 1})", "application/json");
  EXPECT_EQ(json::parse(res->body)["field"], "bogus");
  res = client_->Put("/api/v1/policy", Auth(), "{not json", "application/json");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["field"], "body");
  res = client_->Put("/api/v1/policy", Auth(), R"({"cooldown_s": 12, "forecast_model": "holt"})",
                     "application/json");
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(control_.policy_.cooldown_s, 12);
  EXPECT_EQ(control_.policy_.forecast_model, "holt");
  EXPECT_EQ(control_.last_who_, "api");
}

TEST_F(RestApiTest, PlacementsAndDecisionsComeFromHistory) {
  auto res = client_->Get("/api/v1/placement");
  EXPECT_EQ(res->status, 404);
  PlacementRecord r;
  r.epoch = 4;
  r.topology.nodes = 1;
  r.topology.gpus_per_node = 2;
  r.topology.slots_per_gpu = 1;
  r.placement.num_experts = 2;
  r.placement.layer_ids = {0};
  r.placement.physical_to_logical = {{1, 0}};
  control_.WithHistory([&](HistoryStore& h) {
    ASSERT_TRUE(h.CommitPlacement(r).ok());
    StoredDecision d;
    d.action = "add_replica";
    d.reason = "layer 0 skew 1.8";
    d.layer_index = 0;
    ASSERT_TRUE(h.RecordDecision(d).ok());
  });
  res = client_->Get("/api/v1/placement");
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["physical_to_logical_map"], json::parse("[[1,0]]"));
  EXPECT_EQ(client_->Get("/api/v1/placements/4")->status, 200);
  EXPECT_EQ(client_->Get("/api/v1/placements/5")->status, 404);
  res = client_->Get("/api/v1/decisions?layer=0&limit=10");
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["items"][0]["reason"], "layer 0 skew 1.8");
  res = client_->Get("/api/v1/decisions?limit=0");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["field"], "limit");
  res = client_->Get("/api/v1/load?from_ms=abc");
  EXPECT_EQ(json::parse(res->body)["field"], "from_ms");
}

TEST_F(RestApiTest, TrendsAndForecastsForTheUi) {
  auto res = client_->Get("/api/v1/trends?limit=1");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  json body = json::parse(res->body);
  EXPECT_EQ(body["layers"], json({0, 8}));
  ASSERT_EQ(body["items"].size(), 1u);
  EXPECT_EQ(body["items"][0]["epoch"], 3);
  EXPECT_EQ(body["items"][0]["cross_node_sends"], json({0.5, 0.75}));
  EXPECT_EQ(client_->Get("/api/v1/trends?limit=721")->status, 400);

  res = client_->Get("/api/v1/forecast?layer=1");
  ASSERT_EQ(res->status, 200);
  body = json::parse(res->body);
  ASSERT_EQ(body["items"].size(), 2u);
  EXPECT_TRUE(body["items"][0]["forecast"].is_null());  // nothing was forecast yet
  EXPECT_EQ(body["items"][1]["forecast"], json({3.5, 2.5}));
  res = client_->Get("/api/v1/forecast?layer=2");  // the fake has 2 layers
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["field"], "layer");
}

TEST_F(RestApiTest, TrafficGivesMeasuredTotalsAndTheLatestWindow) {
  auto res = client_->Get("/api/v1/traffic");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  json body = json::parse(res->body);
  EXPECT_EQ(body["epoch"], 3);
  ASSERT_EQ(body["layers"].size(), 2u);
  const json& l0 = body["layers"][0];
  EXPECT_EQ(l0["layer"], 0);
  EXPECT_EQ(l0["tokens"], 100);
  EXPECT_EQ(l0["remote_sends"], 90);
  EXPECT_EQ(l0["cross_node_sends"], 40);
  EXPECT_EQ(l0["intra_node_bytes"], 30 * 64);
  EXPECT_EQ(l0["cross_node_bytes"], 40 * 64);
  EXPECT_EQ(l0["rank_load"], json({120, 80}));
  EXPECT_EQ(l0["window"]["tokens"], 10);
  EXPECT_EQ(l0["window"]["rank_load"], json({15, 5}));
  EXPECT_EQ(l0["window"]["imbalance"], 1.5);
  EXPECT_EQ(body["layers"][1]["layer"], 8);
}

// Every request is timed under its route template. One kept-alive connection: the server
// records a request before it reads the next one from it.
TEST_F(RestApiTest, MetricsTimeRequestsByRouteTemplate) {
  client_->set_keep_alive(true);
  ASSERT_TRUE(client_->Get("/healthz"));
  auto missing = client_->Get("/api/v1/placements/12345");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  ASSERT_TRUE(client_->Post("/api/v1/pause", "", "application/json"));  // 401: no token
  client_->set_keep_alive(false);  // the last request closes the connection
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  for (const char* count :
       {"grace_http_request_duration_seconds_count{route=\"/healthz\",method=\"GET\",code=\"2xx\"} "
        "1",
        "grace_http_request_duration_seconds_count{route=\"/api/v1/placements/{epoch}\","
        "method=\"GET\",code=\"4xx\"} 1",
        "grace_http_request_duration_seconds_count{route=\"/api/v1/pause\",method=\"POST\","
        "code=\"4xx\"} 1",
        "grace_http_request_duration_seconds_bucket{route=\"/healthz\",method=\"GET\",code=\"2xx\","
        "le=\"+Inf\"} 1"}) {
    EXPECT_NE(res->body.find(count), std::string::npos) << count << "\n" << res->body;
  }
  EXPECT_EQ(res->body.find("12345"), std::string::npos);
}

TEST_F(RestApiTest, MetricsAndOpenApi) {
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("grace_layer_imbalance{layer=\"8\"} 1.5"), std::string::npos);
  EXPECT_NE(res->body.find("grace_measured_tokens_total{layer=\"8\"} 100"), std::string::npos);
  EXPECT_NE(res->body.find("grace_measured_sends_total{layer=\"0\",scope=\"node\"} 30"),
            std::string::npos);
  EXPECT_NE(res->body.find("grace_measured_sends_total{layer=\"0\",scope=\"cross_node\"} 40"),
            std::string::npos);
  EXPECT_NE(
      res->body.find("grace_measured_send_bytes_total{layer=\"0\",scope=\"cross_node\"} 2560"),
      std::string::npos);
  EXPECT_NE(res->body.find("grace_measured_imbalance{layer=\"0\"} 1.5"), std::string::npos);
  EXPECT_NE(res->body.find("grace_load_report_sections_refused_total{section=\"coactivation\"} 0"),
            std::string::npos);
  EXPECT_NE(res->body.find("grace_agents{state=\"up\"} 1"), std::string::npos);
  res = client_->Get("/api/v1/openapi.json");
  json doc = json::parse(res->body);
  EXPECT_EQ(doc["openapi"], "3.0.3");
  for (const char* path :
       {"/api/v1/placement", "/api/v1/placements/{epoch}", "/api/v1/decisions", "/api/v1/load",
        "/api/v1/trends", "/api/v1/forecast", "/api/v1/traffic", "/api/v1/agents", "/api/v1/policy",
        "/api/v1/replan", "/api/v1/pause", "/api/v1/resume", "/metrics", "/healthz"}) {
    EXPECT_TRUE(doc["paths"].contains(path)) << path;
  }
  EXPECT_EQ(doc["components"]["schemas"]["Policy"]["properties"]["cooldown_s"]["maximum"], 86400);
}

}  // namespace
}  // namespace grace
