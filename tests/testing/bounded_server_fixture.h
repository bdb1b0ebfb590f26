// BoundedServerFixture: a BoundedHttpServer (daemon/http_server.h) on an ephemeral loopback port,
// served on its own thread, with the routes the server tests probe:
//   GET /healthz   "ok"
//   PUT /echo      the body back (bodies_read_ counts the bodies handlers read)
//   body gate      "Authorization: Bearer tok", else 401 before the body is read
// StartServer(limits, tls) starts it, over TLS when a context is given; TearDown stops it.
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "daemon/http_server.h"
#include "daemon/tls_context.h"

namespace grace::testing {

class BoundedServerFixture : public ::testing::Test {
 protected:
  void StartServer(HttpServerLimits limits, std::shared_ptr<const TlsServerContext> tls) {
    server_ = std::make_unique<BoundedHttpServer>(limits);
    server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain");
    });
    server_->Put("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      ++bodies_read_;
      res.set_content(req.body, "text/plain");
    });
    server_->set_body_gate([](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") == "Bearer tok") return true;
      res.status = 401;
      return false;
    });
    if (tls != nullptr) server_->set_tls(std::move(tls));
    StatusOr<int> port = server_->Bind("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
    thread_ = std::thread([this] { server_->Serve(); });
    while (!server_->serving()) std::this_thread::yield();
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    if (thread_.joinable()) thread_.join();
  }

  std::unique_ptr<BoundedHttpServer> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> bodies_read_{0};
};

}  // namespace grace::testing
