// RestApi: graced's HTTP interface: the REST API under /api/v1 (described by the OpenAPI 3
// document at /api/v1/openapi.json), Prometheus metrics at /metrics, /healthz, and the web UI's
// static files.
//
// Read-only calls are open; every mutating call (PUT, POST) needs "Authorization: Bearer
// <token>" and gets 401 without it. Bad JSON or parameters get 400 with {"error", "field"}.
// Every response carries a strict Content-Security-Policy (no inline script).
//
// Thread contract: Start() spawns the HTTP server's threads, which call the ControlPlane
// concurrently; Stop() joins them. Bind to 127.0.0.1 unless told otherwise.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "core/status.h"
#include "daemon/control_plane.h"
#include "daemon/http_metrics.h"

#include "daemon/http_server.h"

namespace grace {

struct RestApiOptions {
  std::string host = "127.0.0.1";
  int port = 8750;        // 0: pick a free port (see RestApi::port())
  std::string api_token;  // empty: every mutating call is refused
  std::string web_root;   // static UI files; empty: none served
  // Both set: HTTPS only, with this PEM certificate chain and key (daemon/tls_context.h).
  std::string tls_cert_file;
  std::string tls_key_file;
  HttpServerLimits limits;
};

class RestApi {
 public:
  RestApi(ControlPlane& control, RestApiOptions options);
  ~RestApi();
  RestApi(const RestApi&) = delete;
  RestApi& operator=(const RestApi&) = delete;

  // Loads the TLS certificate and key when set, binds and starts serving in the background;
  // fails naming the file that cannot be used, or the address when it cannot bind.
  Status Start();
  void Stop();
  int port() const { return bound_port_; }
  bool tls() const { return !options_.tls_cert_file.empty(); }

 private:
  void Routes();

  ControlPlane& control_;
  RestApiOptions options_;
  std::unique_ptr<BoundedHttpServer> server_;
  std::thread thread_;
  int bound_port_ = 0;
  HttpRequestMetrics http_metrics_;  // every route of the OpenAPI document
};

// The OpenAPI 3 document describing every route above.
std::string OpenApiDocument();
// The Prometheus text exposition of `m`.
std::string PrometheusText(const DaemonMetrics& m);

}  // namespace grace
