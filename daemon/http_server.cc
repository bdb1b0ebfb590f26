// BoundedHttpServer: httplib's Server configured for graced (exclusive bind, backlog, keep-alive),
// the gate that decides from a request's head whether its body may be read, and the hand-off of
// accepted connections to HttpEventLoop (daemon/http_event_loop.h). This file is where binding
// errors become Status values.
#include "daemon/http_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <spdlog/spdlog.h>

#include "daemon/http_connection.h"
#include "daemon/http_event_loop.h"

namespace grace {
namespace {

// The request the worker on this thread runs (the pre-routing handler marks a refused body).
thread_local HttpRequestState* tls_request = nullptr;

// The accept loop hands each connection to process_and_close_socket(), which only passes it to
// the event thread; running that inline costs nothing and keeps httplib's thread pool out.
class InlineTaskQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

void SetError(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content("{\"error\":\"" + message + "\"}", "application/json");
  res.set_header("Connection", "close");
}

}  // namespace

BoundedHttpServer::BoundedHttpServer(HttpServerLimits limits)
    : limits_(limits),
      connections_(std::make_unique<HttpEventLoop>(
          limits_,
          [this](HttpConnectionStream& stream, bool last, bool& closed, HttpRequestState& state) {
            tls_request = &state;
            const bool ok = process_request(stream, last, closed, nullptr);
            tls_request = nullptr;
            return ok;
          })) {
  new_task_queue = [] { return new InlineTaskQueue(); };
  set_keep_alive_timeout(std::max(1, limits_.idle_timeout_ms / 1000));
  set_keep_alive_max_count(static_cast<size_t>(std::max(1, limits_.max_requests_per_connection)));
  set_payload_max_length(limits_.max_body_bytes);
  // Exclusive: httplib's default also sets SO_REUSEPORT, which lets a second daemon share the
  // port and the kernel split requests between the two.
  set_socket_options([](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  // A body is read only once its head passed these checks; a refused one is never read.
  auto admit_body = [this](const httplib::Request& req, httplib::Response& res) {
    if (req.has_header("Transfer-Encoding")) {
      SetError(res, 411, "send the body with a Content-Length, not a Transfer-Encoding");
      return false;
    }
    uint64_t length = 0;
    if (req.has_header("Content-Length")) {
      const std::string text = req.get_header_value("Content-Length");
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), length);
      if (ec != std::errc() || end != text.data() + text.size()) {
        SetError(res, 400, "Content-Length is not a number");
        return false;
      }
    }
    if (body_gate_ && !body_gate_(req, res)) {
      res.set_header("Connection", "close");
      return false;
    }
    if (length > limits_.max_body_bytes) {
      SetError(res, 413,
               "request body of " + std::to_string(length) + " bytes is over the limit of " +
                   std::to_string(limits_.max_body_bytes));
      return false;
    }
    return true;
  };
  auto expects_body = [](const httplib::Request& req) {
    return req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
           req.method == "DELETE" || req.method == "PRI";
  };
  set_expect_100_continue_handler(
      [admit_body, expects_body](const httplib::Request& req, httplib::Response& res) {
        if (!expects_body(req) || admit_body(req, res)) return 100;
        if (tls_request) tls_request->skip_body = true;
        return res.status;
      });
  set_pre_routing_handler(
      [this, admit_body, expects_body](const httplib::Request& req, httplib::Response& res) {
        if (routing_started_) routing_started_(req);
        if (!expects_body(req) || admit_body(req, res)) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        if (tls_request) tls_request->skip_body = true;
        return httplib::Server::HandlerResponse::Handled;
      });
}

BoundedHttpServer::~BoundedHttpServer() {
  Shutdown();
}

void BoundedHttpServer::set_body_gate(BodyGate gate) {
  body_gate_ = std::move(gate);
}

void BoundedHttpServer::set_tls(std::shared_ptr<const TlsServerContext> tls) {
  connections_->set_tls(std::move(tls));
}

void BoundedHttpServer::set_routing_started(std::function<void(const httplib::Request&)> hook) {
  routing_started_ = std::move(hook);
}

StatusOr<int> BoundedHttpServer::Bind(const std::string& host, int port) {
  errno = 0;
  const int bound = port == 0 ? bind_to_any_port(host) : (bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    const int err = errno;
    std::string why = err != 0 ? std::strerror(err) : "cannot bind";
    if (err == EADDRINUSE) why += " (is another graced running?)";
    return Unavailable("cannot bind the HTTP server to " + host + ":" + std::to_string(port) +
                       ": " + why);
  }
  // httplib listens with a backlog of 5; a second listen() only raises it.
  if (::listen(svr_sock_, limits_.listen_backlog) != 0) {
    spdlog::warn("http: cannot raise the listen backlog to {}: {}", limits_.listen_backlog,
                 std::strerror(errno));
  }
  Status started = connections_->Start();
  if (!started.ok()) return started;
  return bound;
}

void BoundedHttpServer::Serve() {
  listen_after_bind();
}

void BoundedHttpServer::Shutdown() {
  if (is_running()) stop();
  connections_->Stop();
}

bool BoundedHttpServer::process_and_close_socket(socket_t sock) {
  connections_->Adopt(sock);
  return true;
}

}  // namespace grace
