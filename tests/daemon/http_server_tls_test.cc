// BoundedHttpServer over TLS (daemon/http_server.h with set_tls): requests are answered through
// the session, plaintext is not, and every bound of the plaintext server still holds, the TLS
// handshake included (stalled or garbage handshakes hold no worker and are cut at a deadline).
#include <csignal>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/http_server.h"
#include "daemon/tls_context.h"
#include "tests/testing/bounded_server_fixture.h"
#include "tests/testing/raw_client.h"
#include "tests/testing/test_certificate.h"
#include "tests/testing/tls_client.h"

namespace grace {
namespace {

using testing::RawClient;
using testing::TlsRawClient;

// The first bytes of a TLS handshake record that announces 16 KB and never sends them.
const std::string kPartialRecord("\x16\x03\x01\x40\x00\x01", 6);

class TlsHttpServerTest : public testing::BoundedServerFixture {
 protected:
  static void SetUpTestSuite() {
    // Clients here write through OpenSSL (write(2)) to a server that may close first.
    std::signal(SIGPIPE, SIG_IGN);
    dir_ = std::filesystem::temp_directory_path() / ("http_tls_" + std::to_string(::getpid()));
    ASSERT_TRUE(testing::MakeTestCertificates(dir_, &certs_));
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  void Start(HttpServerLimits limits = {}) {
    auto tls = TlsServerContext::Load(certs_.cert_file, certs_.key_file);
    ASSERT_TRUE(tls.ok()) << tls.status().ToString();
    StartServer(limits, *tls);
  }
  std::unique_ptr<httplib::SSLClient> Client() {
    auto client = std::make_unique<httplib::SSLClient>("127.0.0.1", port_);
    client->set_ca_cert_path(certs_.ca_file);
    client->enable_server_certificate_verification(true);
    client->set_read_timeout(20, 0);
    return client;
  }
  int Healthz() {
    auto res = Client()->Get("/healthz");
    return res ? res->status : 0;
  }

  static inline std::filesystem::path dir_;
  static inline testing::TestCertificates certs_;
};

TEST_F(TlsHttpServerTest, AnswersOverTlsAndNotInPlaintext) {
  Start();
  EXPECT_EQ(Healthz(), 200);
  auto kept = Client();
  kept->set_keep_alive(true);
  for (int i = 0; i < 5; ++i) {
    auto res = kept->Get("/healthz");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->body, "ok");
  }
  auto put = kept->Put("/echo", {{"Authorization", "Bearer tok"}}, "hello", "text/plain");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->body, "hello");

  httplib::Client plain("127.0.0.1", port_);
  plain.set_read_timeout(20, 0);
  EXPECT_FALSE(plain.Get("/healthz"));
  RawClient raw(port_);
  ASSERT_TRUE(raw.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(raw.ReadAll().find("HTTP/1.1"), std::string::npos);
}

TEST_F(TlsHttpServerTest, StalledAndGarbageHandshakesDoNotStarveOthers) {
  Start();
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 200; ++i) held.push_back(std::make_unique<RawClient>(port_));
  for (int i = 0; i < 8; ++i) {
    auto garbage = std::make_unique<RawClient>(port_);
    ASSERT_TRUE(garbage->Send(i % 2 == 0 ? kPartialRecord : std::string("\x16\x03\x01garbage")));
    held.push_back(std::move(garbage));
  }
  for (const auto& c : held) ASSERT_TRUE(c->connected());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Healthz(), 200);
}

TEST_F(TlsHttpServerTest, AStalledHandshakeIsCutAtItsDeadline) {
  HttpServerLimits limits;
  limits.handshake_timeout_ms = 200;
  Start(limits);
  RawClient silent(port_);
  RawClient partial(port_);
  ASSERT_TRUE(partial.Send(kPartialRecord));
  EXPECT_TRUE(silent.WaitClosed());
  EXPECT_TRUE(partial.WaitClosed());
  EXPECT_EQ(Healthz(), 200);
}

TEST_F(TlsHttpServerTest, AnUnfinishedHeadIsCutAtItsDeadline) {
  HttpServerLimits limits;
  limits.head_timeout_ms = 200;
  Start(limits);
  TlsRawClient drip(port_, certs_.ca_file);
  ASSERT_TRUE(drip.connected());
  ASSERT_TRUE(drip.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
  EXPECT_NE(drip.ReadAll().find("408 Request Timeout"), std::string::npos);
}

TEST_F(TlsHttpServerTest, AnIdleSessionIsClosed) {
  HttpServerLimits limits;
  limits.idle_timeout_ms = 200;
  Start(limits);
  TlsRawClient idle(port_, certs_.ca_file);
  ASSERT_TRUE(idle.connected());
  EXPECT_TRUE(idle.WaitClosed());
}

TEST_F(TlsHttpServerTest, BodiesAreGatedAndBoundedBeforeTheyAreRead) {
  Start();
  TlsRawClient big(port_, certs_.ca_file);
  ASSERT_TRUE(big.connected());
  ASSERT_TRUE(
      big.Send("PUT /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
               "Content-Length: 1000000000\r\n\r\n" +
               std::string(4096, 'x')));
  EXPECT_EQ(big.ReadStatus(), 413);
  TlsRawClient anon(port_, certs_.ca_file);
  ASSERT_TRUE(anon.Send("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"));
  EXPECT_EQ(anon.ReadStatus(), 401);
  std::string many = "GET /healthz HTTP/1.1\r\n";
  for (int i = 0; i < 1000; ++i) many += "X-" + std::to_string(i) + ": y\r\n";
  TlsRawClient headers(port_, certs_.ca_file);
  ASSERT_TRUE(headers.Send(many + "\r\n"));
  EXPECT_EQ(headers.ReadStatus(), 431);
  EXPECT_EQ(bodies_read_, 0);
  EXPECT_EQ(Healthz(), 200);
}

TEST_F(TlsHttpServerTest, RequestsSentInSeparateRecordsAreAllAnswered) {
  Start();
  TlsRawClient c(port_, certs_.ca_file);
  ASSERT_TRUE(c.connected());
  // One TLS record each, sent before any answer: the later ones wait in the session's buffer or
  // the socket while the first is served.
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(
      c.Send("PUT /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: 3\r\n"
             "\r\nabc"));
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  const std::string all = c.ReadAll();
  size_t answers = 0;
  for (size_t at = all.find("HTTP/1.1 200"); at != std::string::npos;
       at = all.find("HTTP/1.1 200", at + 1)) {
    ++answers;
  }
  EXPECT_EQ(answers, 3u) << all;
  EXPECT_NE(all.find("abc"), std::string::npos);
}

TEST_F(TlsHttpServerTest, AtTheConnectionCapStalledHandshakesMakeRoom) {
  HttpServerLimits limits;
  limits.max_connections = 20;
  limits.handshake_timeout_ms = 60000;  // only the cap can close them within the test
  Start(limits);
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 40; ++i) held.push_back(std::make_unique<RawClient>(port_));
  EXPECT_EQ(Healthz(), 200);
  EXPECT_TRUE(held.front()->WaitClosed());  // closed to make room
}

}  // namespace
}  // namespace grace
