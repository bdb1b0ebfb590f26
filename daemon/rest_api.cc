#include "daemon/rest_api.h"

#include <httplib.h>

#include <charconv>
#include <chrono>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/wire_protocol.h"

namespace grace {
namespace {

using nlohmann::json;

constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void SendError(httplib::Response& res, int status, const std::string& message,
               const std::string& field = "") {
  json body = {{"error", message}};
  if (!field.empty()) body["field"] = field;
  SendJson(res, status, body);
}

// Reads an integer query parameter; on a bad value answers 400 naming it and returns nullopt.
std::optional<int64_t> IntParam(const httplib::Request& req, httplib::Response& res,
                                const char* name, int64_t fallback, int64_t min, int64_t max) {
  if (!req.has_param(name)) return fallback;
  const std::string text = req.get_param_value(name);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    SendError(res, 400,
              std::string("query parameter '") + name + "' must be an integer in [" +
                  std::to_string(min) + ", " + std::to_string(max) + "], got '" + text + "'",
              name);
    return std::nullopt;
  }
  return v;
}

std::optional<HistoryQuery> QueryParams(const httplib::Request& req, httplib::Response& res) {
  HistoryQuery q;
  auto from = IntParam(req, res, "from_ms", 0, 0, INT64_MAX);
  if (!from) return std::nullopt;
  auto to = IntParam(req, res, "to_ms", INT64_MAX, 0, INT64_MAX);
  if (!to) return std::nullopt;
  auto layer = IntParam(req, res, "layer", -1, -1, 1 << 20);
  if (!layer) return std::nullopt;
  auto offset = IntParam(req, res, "offset", 0, 0, INT64_MAX);
  if (!offset) return std::nullopt;
  auto limit = IntParam(req, res, "limit", 100, 1, 1000);
  if (!limit) return std::nullopt;
  q.from_ms = *from;
  q.to_ms = *to;
  q.layer_index = static_cast<int>(*layer);
  q.offset = *offset;
  q.limit = *limit;
  return q;
}

json PlacementRecordJson(const PlacementRecord& r, bool with_rows) {
  json j = {
      {"epoch", r.epoch}, {"committed_at_ms", r.committed_at_ms}, {"decision_id", r.decision_id}};
  if (with_rows) {
    j["topology"] = TopologyToJson(r.topology);
    j["num_experts"] = r.placement.num_experts;
    j["layers"] = r.placement.layer_ids;
    j["physical_to_logical_map"] = r.placement.physical_to_logical;
  }
  return j;
}

json DecisionJson(const StoredDecision& d) {
  return {{"id", d.id},
          {"time_ms", d.time_ms},
          {"action", d.action},
          {"layer_index", d.layer_index},
          {"reason", d.reason},
          {"predicted_gain_ms", d.predicted_gain_ms},
          {"realised_gain_ms", d.realised_gain_ms ? json(*d.realised_gain_ms) : json(nullptr)},
          {"bytes", d.bytes},
          {"epoch", d.epoch ? json(*d.epoch) : json(nullptr)}};
}

json MeasuredJson(const MeasuredLayerTraffic& t) {
  return {{"tokens", t.tokens},
          {"node_sends", t.node_sends},
          {"remote_sends", t.remote_sends},
          {"cross_node_sends", t.cross_node_sends},
          {"intra_node_bytes", t.intra_node_bytes},
          {"cross_node_bytes", t.cross_node_bytes},
          {"rank_load", t.rank_load}};
}

// The latency histogram's route labels: every path of the OpenAPI document, and the document.
std::vector<std::string> RouteTemplates() {
  std::vector<std::string> routes = {"/api/v1/openapi.json"};
  const json doc = json::parse(OpenApiDocument());
  for (const auto& [path, item] : doc["paths"].items()) {
    routes.push_back(path);
  }
  return routes;
}

// When the request being served on this thread arrived (httplib serves one at a time per
// thread: the pre-routing handler sets it, the logger reads it).
thread_local std::chrono::steady_clock::time_point request_started;

}  // namespace

RestApi::RestApi(ControlPlane& control, RestApiOptions options)
    : control_(control),
      options_(std::move(options)),
      server_(std::make_unique<BoundedHttpServer>(options_.limits)),
      http_metrics_(RouteTemplates()) {}

RestApi::~RestApi() {
  Stop();
}

Status RestApi::Start() {
  if (tls()) {
    StatusOr<std::shared_ptr<const TlsServerContext>> tls =
        TlsServerContext::Load(options_.tls_cert_file, options_.tls_key_file);
    if (!tls.ok()) return tls.status().WithContext("[http]");
    server_->set_tls(*std::move(tls));
  }
  Routes();
  StatusOr<int> bound = server_->Bind(options_.host, options_.port);
  if (!bound.ok()) return bound.status();
  bound_port_ = *bound;
  thread_ = std::thread([this] { server_->Serve(); });
  // The socket already accepts connections; wait until the accept loop runs, so that a Stop()
  // right after Start() cannot miss it (httplib's stop() only acts on a running server).
  for (int i = 0; i < 5000 && !server_->serving(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Status::Ok();
}

void RestApi::Stop() {
  if (server_) server_->Shutdown();
  if (thread_.joinable()) thread_.join();
}

void RestApi::Routes() {
  BoundedHttpServer& s = *server_;
  s.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy", kContentSecurityPolicy);
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
  });
  s.set_routing_started(
      [](const httplib::Request&) { request_started = std::chrono::steady_clock::now(); });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    // A request refused before routing (malformed) has no start time: not counted.
    if (request_started == std::chrono::steady_clock::time_point()) return;
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - request_started;
    request_started = {};
    http_metrics_.Observe(req.method, req.path, res.status, took.count());
  });
  if (!options_.web_root.empty()) s.set_mount_point("/", options_.web_root);

  // Mutating routes go through this: 401 unless the bearer token matches.
  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (!options_.api_token.empty() && header.rfind(prefix, 0) == 0 &&
        ConstantTimeEquals(std::string_view(header).substr(prefix.size()), options_.api_token)) {
      return true;
    }
    res.set_header("WWW-Authenticate", "Bearer");
    SendError(res, 401, "this call needs 'Authorization: Bearer <token>' (GRACE_API_TOKEN)");
    return false;
  };
  // Every call with a body mutates: the token is checked before the body is read.
  s.set_body_gate(authorized);

  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"status", "ok"}});
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::ostringstream text;
    text << PrometheusText(control_.Metrics());
    http_metrics_.WritePrometheus(text);
    res.set_content(text.str(), "text/plain; version=0.0.4");
  });
  s.Get("/api/v1/openapi.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(OpenApiDocument(), "application/json");
  });
  s.Get("/api/v1/status", [this](const httplib::Request&, httplib::Response& res) {
    const DaemonMetrics m = control_.Metrics();
    SendJson(res, 200,
             {{"epoch", m.epoch},
              {"paused", m.paused},
              {"agents_up", m.agents_up},
              {"agents_lost", m.agents_lost},
              {"migrations_total", m.migrations_total},
              {"migration_bytes_total", m.migration_bytes_total},
              {"decisions_total", m.decisions_total},
              {"layers", m.layer_ids},
              {"layer_imbalance", m.layer_imbalance},
              {"layer_cross_node_sends", m.layer_cross_node_sends},
              {"forecast_mape", m.forecast_mape},
              {"last_value_mape", m.last_value_mape}});
  });
  s.Get("/api/v1/placement", [this](const httplib::Request&, httplib::Response& res) {
    control_.WithHistory([&](HistoryStore& h) {
      auto current = h.CurrentPlacement();
      if (!current.ok()) return SendError(res, 500, current.status().message());
      if (!current->has_value()) return SendError(res, 404, "no placement committed yet");
      SendJson(res, 200, PlacementRecordJson(**current, true));
    });
  });
  s.Get(R"(/api/v1/placements/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
    Epoch epoch = 0;
    const std::string text = req.matches[1];
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), epoch);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return SendError(res, 400, "epoch must be an unsigned integer", "epoch");
    }
    control_.WithHistory([&](HistoryStore& h) {
      auto r = h.PlacementAt(epoch);
      if (!r.ok()) return SendError(res, 500, r.status().message());
      if (!r->has_value()) return SendError(res, 404, "no epoch " + text, "epoch");
      SendJson(res, 200, PlacementRecordJson(**r, true));
    });
  });
  s.Get("/api/v1/placements", [this](const httplib::Request& req, httplib::Response& res) {
    auto q = QueryParams(req, res);
    if (!q) return;
    control_.WithHistory([&](HistoryStore& h) {
      auto list = h.ListPlacements(*q);
      if (!list.ok()) return SendError(res, 500, list.status().message());
      json items = json::array();
      for (const PlacementRecord& r : *list) items.push_back(PlacementRecordJson(r, false));
      SendJson(res, 200, {{"items", items}, {"offset", q->offset}, {"limit", q->limit}});
    });
  });
  s.Get("/api/v1/decisions", [this](const httplib::Request& req, httplib::Response& res) {
    auto q = QueryParams(req, res);
    if (!q) return;
    control_.WithHistory([&](HistoryStore& h) {
      auto list = h.ListDecisions(*q);
      if (!list.ok()) return SendError(res, 500, list.status().message());
      json items = json::array();
      for (const StoredDecision& d : *list) items.push_back(DecisionJson(d));
      SendJson(res, 200, {{"items", items}, {"offset", q->offset}, {"limit", q->limit}});
    });
  });
  s.Get("/api/v1/load", [this](const httplib::Request& req, httplib::Response& res) {
    auto q = QueryParams(req, res);
    if (!q) return;
    control_.WithHistory([&](HistoryStore& h) {
      auto list = h.QueryLoad(*q);
      if (!list.ok()) return SendError(res, 500, list.status().message());
      json items = json::array();
      for (const LoadSample& l : *list) {
        items.push_back({{"time_ms", l.time_ms},
                         {"layer_index", l.layer_index},
                         {"resolution_s", l.resolution_s},
                         {"load", l.load}});
      }
      SendJson(res, 200, {{"items", items}, {"offset", q->offset}, {"limit", q->limit}});
    });
  });
  s.Get("/api/v1/trends", [this](const httplib::Request& req, httplib::Response& res) {
    auto limit = IntParam(req, res, "limit", 300, 1, 720);
    if (!limit) return;
    json items = json::array();
    for (const IntervalSnapshot& t : control_.Trends(static_cast<size_t>(*limit))) {
      items.push_back({{"time_ms", t.time_ms},
                       {"epoch", t.epoch},
                       {"imbalance", t.imbalance},
                       {"cross_node_sends", t.cross_node}});
    }
    SendJson(res, 200, {{"layers", control_.Metrics().layer_ids}, {"items", items}});
  });
  s.Get("/api/v1/forecast", [this](const httplib::Request& req, httplib::Response& res) {
    const int num_layers = static_cast<int>(control_.Metrics().layer_ids.size());
    auto layer = IntParam(req, res, "layer", 0, 0, std::max(0, num_layers - 1));
    if (!layer) return;
    auto limit = IntParam(req, res, "limit", 60, 1, 120);
    if (!limit) return;
    json items = json::array();
    for (const ForecastSample& f :
         control_.ForecastHistory(static_cast<int>(*layer), static_cast<size_t>(*limit))) {
      items.push_back({{"time_ms", f.time_ms},
                       {"actual", f.actual},
                       {"forecast", f.forecast.empty() ? json(nullptr) : json(f.forecast)}});
    }
    SendJson(res, 200, {{"layer_index", *layer}, {"items", items}});
  });
  s.Get("/api/v1/traffic", [this](const httplib::Request&, httplib::Response& res) {
    const TrafficSnapshot t = control_.Traffic();
    json layers = json::array();
    for (size_t i = 0; i < t.layer_ids.size() && i < t.total.size() && i < t.window.size(); ++i) {
      json layer = MeasuredJson(t.total[i]);
      layer["layer"] = t.layer_ids[i];
      layer["window"] = MeasuredJson(t.window[i]);
      layer["window"]["imbalance"] = t.window[i].imbalance;
      layers.push_back(std::move(layer));
    }
    SendJson(res, 200, {{"layers", layers}, {"epoch", t.epoch}});
  });
  s.Get("/api/v1/agents", [this](const httplib::Request&, httplib::Response& res) {
    json agents = json::array();
    for (const AgentStatus& a : control_.Agents()) {
      agents.push_back({{"agent_id", a.agent_id},
                        {"node", a.node},
                        {"ranks", a.ranks},
                        {"state", a.state},
                        {"epoch", a.epoch},
                        {"step", a.step},
                        {"last_seen_ms", a.last_seen_ms}});
    }
    json events = json::array();
    control_.WithHistory([&](HistoryStore& h) {
      HistoryQuery q;
      q.limit = 50;
      auto list = h.ListAgentEvents(q);
      if (!list.ok()) return;
      for (const AgentEvent& e : *list) {
        events.push_back({{"time_ms", e.time_ms},
                          {"agent_id", e.agent_id},
                          {"event", e.event},
                          {"detail", e.detail}});
      }
    });
    SendJson(res, 200, {{"agents", agents}, {"events", events}});
  });
  s.Get("/api/v1/policy", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, control_.Policy().ToJson());
  });
  s.Put("/api/v1/policy", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    json patch = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (patch.is_discarded()) return SendError(res, 400, "request body is not valid JSON", "body");
    auto next = ApplyPolicyPatch(control_.Policy(), patch);
    if (!next.ok()) {
      const std::string& msg = next.status().message();
      // "policy.<field>: ..." names the field.
      const size_t dot = msg.find('.'), colon = msg.find(':');
      const std::string field =
          dot != std::string::npos && colon != std::string::npos && dot < colon
              ? msg.substr(dot + 1, colon - dot - 1)
              : "";
      return SendError(res, 400, msg, field);
    }
    Status s = control_.SetPolicy(*next, "api");
    if (!s.ok()) return SendError(res, 409, s.message());
    SendJson(res, 200, next->ToJson());
  });
  s.Post("/api/v1/replan", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    Status s = control_.RequestReplan("api");
    if (!s.ok()) return SendError(res, 409, s.message());
    SendJson(res, 202, {{"status", "replan requested"}});
  });
  s.Post("/api/v1/placement",
         [this, authorized](const httplib::Request& req, httplib::Response& res) {
           if (!authorized(req, res)) return;
           StatusOr<Epoch> epoch = control_.ApplyPlacement(req.body, "api");
           if (!epoch.ok()) {
             const bool busy = epoch.status().code() == StatusCode::kFailedPrecondition;
             return SendError(res, busy ? 409 : 400, epoch.status().message(), busy ? "" : "body");
           }
           SendJson(res, 202, {{"status", "migration started"}, {"epoch", *epoch}});
         });
  s.Post("/api/v1/pause", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    control_.SetPaused(true, "api");
    SendJson(res, 200, {{"paused", true}});
  });
  s.Post("/api/v1/resume", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    control_.SetPaused(false, "api");
    SendJson(res, 200, {{"paused", false}});
  });
}

}  // namespace grace
