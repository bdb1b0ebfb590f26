// BoundedHttpServer: cpp-httplib's Server (routes, parsing, responses) with graced's own
// connection handling (HttpEventLoop, daemon/http_event_loop.h) in place of the library's
// thread-per-connection loop, so that no client can hold the server's threads, memory or port:
//
// - One event thread owns every connection between requests. It reads a request's head
//   (request line and headers) without blocking, bounded in bytes, header count and time, and
//   only a complete head goes to a worker; idle and slow-drip connections never hold a worker.
// - A fixed pool of workers runs the handlers. A body is read only after the head passed the
//   body gate (the caller's check, e.g. the bearer token) and declared a Content-Length within
//   max_body_bytes; otherwise the answer (401, 411, 413) goes out before any of the body is read.
// - Over max_connections the connections idle longest are closed to admit new ones (those in
//   the middle of a request are not: they finish first).
// - With set_tls(), every connection is TLS: the event thread drives the non-blocking handshake
//   within handshake_timeout_ms (a stalled or garbage handshake holds neither a worker nor the
//   loop, and counts as idle against max_connections), then requests are read and answered
//   through the session under the same bounds as plaintext. A plaintext request gets no answer.
// - The port is bound exclusively (SO_REUSEADDR, never SO_REUSEPORT): a second daemon on the same
//   port fails with the address named. The listen backlog is listen_backlog; TCP_NODELAY is set
//   on every connection (no Nagle/delayed-ACK stall between a response's header and body).
//
// Use it as an httplib::Server (Get/Put/Post, set_mount_point, set_post_routing_handler), then
// Bind(), then Serve() on a thread of its own; Shutdown() from another thread stops everything.
// It installs the pre-routing and Expect: 100-continue handlers itself.
#pragma once

#include <httplib.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "daemon/tls_context.h"

namespace grace {

class HttpEventLoop;

struct HttpServerLimits {
  int workers = 8;                  // threads that run handlers
  int max_connections = 1000;       // open client connections
  int listen_backlog = 1024;        // pending connections the kernel queues before accept
  int handshake_timeout_ms = 5000;  // TLS: from accept to the end of the handshake
  int idle_timeout_ms = 5000;       // a connection with no request started
  int head_timeout_ms = 5000;       // from a request's first byte to the end of its headers
  int body_timeout_ms = 10000;      // reading a body
  int write_timeout_ms = 10000;     // writing a response
  size_t max_head_bytes = 32 * 1024;
  int max_header_count = 100;
  size_t max_body_bytes = 1 << 20;
  int max_requests_per_connection = 10000;
};

class BoundedHttpServer : public httplib::Server {
 public:
  // Decides from the head alone whether a request may send its body. On false it has filled
  // `res` (e.g. 401); the body is then never read and the connection is closed.
  using BodyGate = std::function<bool(const httplib::Request& req, httplib::Response& res)>;

  explicit BoundedHttpServer(HttpServerLimits limits = {});
  ~BoundedHttpServer() override;

  void set_body_gate(BodyGate gate);
  // Serves TLS with `tls` (daemon/tls_context.h) instead of plaintext; call before Bind().
  void set_tls(std::shared_ptr<const TlsServerContext> tls);
  // Called as each request's head is routed, before the body gate (for request timing). The
  // server's own pre-routing handler gates bodies: set this, never set_pre_routing_handler.
  void set_routing_started(std::function<void(const httplib::Request&)> hook);

  // Binds `host:port` (port 0: a free one) and returns the bound port, or fails naming the
  // address and the system's reason.
  StatusOr<int> Bind(const std::string& host, int port);
  // Accepts and serves until Shutdown(); call once, after Bind(), on a thread of its own.
  void Serve();
  bool serving() const { return is_running(); }
  // Stops accepting, closes every connection and joins the threads. Safe to call twice.
  void Shutdown();

 private:
  bool process_and_close_socket(socket_t sock) override;

  HttpServerLimits limits_;
  BodyGate body_gate_;
  std::function<void(const httplib::Request&)> routing_started_;
  std::unique_ptr<HttpEventLoop> connections_;
};

}  // namespace grace
