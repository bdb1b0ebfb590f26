#include "daemon/http_server.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testing/bounded_server_fixture.h"
#include "tests/testing/raw_client.h"

namespace grace {
namespace {

using testing::RawClient;

class BoundedHttpServerTest : public testing::BoundedServerFixture {
 protected:
  void Start(HttpServerLimits limits = {}) { StartServer(limits, nullptr); }
  int Healthz() {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(20, 0);
    auto res = client.Get("/healthz");
    return res ? res->status : 0;
  }
};

TEST_F(BoundedHttpServerTest, IdleAndSlowDripConnectionsDoNotStarveOthers) {
  Start();
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 200; ++i) held.push_back(std::make_unique<RawClient>(port_));
  for (int i = 0; i < 8; ++i) {
    auto drip = std::make_unique<RawClient>(port_);
    ASSERT_TRUE(drip->Send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: a"));
    held.push_back(std::move(drip));
  }
  for (const auto& c : held) ASSERT_TRUE(c->connected());
  // httplib's own loop gives each of those a worker thread for seconds at a time; here they
  // wait on the event thread and this request is answered.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Healthz(), 200);
}

TEST_F(BoundedHttpServerTest, AnUnfinishedHeadIsCutAtItsDeadline) {
  HttpServerLimits limits;
  limits.head_timeout_ms = 200;
  Start(limits);
  RawClient drip(port_);
  ASSERT_TRUE(drip.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
  EXPECT_NE(drip.ReadAll().find("408 Request Timeout"), std::string::npos);
}

TEST_F(BoundedHttpServerTest, AnIdleConnectionIsClosed) {
  HttpServerLimits limits;
  limits.idle_timeout_ms = 200;
  Start(limits);
  RawClient idle(port_);
  EXPECT_EQ(idle.ReadAll(), "");  // returns at the server's close, not at the 20 s bound
  EXPECT_EQ(Healthz(), 200);
}

TEST_F(BoundedHttpServerTest, ABodyOverTheLimitIsRefusedBeforeItIsRead) {
  Start();
  RawClient big(port_);
  ASSERT_TRUE(
      big.Send("PUT /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
               "Content-Length: 1000000000\r\n\r\n" +
               std::string(4096, 'x')));
  // The rest of the gigabyte never comes: only an answer from the head can arrive.
  EXPECT_EQ(big.ReadStatus(), 413);
  EXPECT_EQ(bodies_read_, 0);
}

TEST_F(BoundedHttpServerTest, TheGateRunsBeforeTheBodyIsRead) {
  Start();
  RawClient anon(port_);
  ASSERT_TRUE(anon.Send("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"));
  EXPECT_EQ(anon.ReadStatus(), 401);
  RawClient expect(port_);
  ASSERT_TRUE(
      expect.Send("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                  "Expect: 100-continue\r\n\r\n"));
  EXPECT_EQ(expect.ReadStatus(), 401);
  RawClient chunked(port_);
  ASSERT_TRUE(
      chunked.Send("PUT /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n"));
  EXPECT_EQ(chunked.ReadStatus(), 411);
  EXPECT_EQ(bodies_read_, 0);

  httplib::Client client("127.0.0.1", port_);
  auto res = client.Put("/echo", {{"Authorization", "Bearer tok"}}, "hello", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body, "hello");
}

TEST_F(BoundedHttpServerTest, TooManyOrTooLongHeadersAreRefused) {
  Start();
  std::string many = "GET /healthz HTTP/1.1\r\n";
  for (int i = 0; i < 1000; ++i) many += "X-" + std::to_string(i) + ": y\r\n";
  RawClient a(port_);
  ASSERT_TRUE(a.Send(many + "\r\n"));
  EXPECT_EQ(a.ReadStatus(), 431);
  RawClient b(port_);
  ASSERT_TRUE(b.Send("GET /healthz HTTP/1.1\r\nX-Long: " + std::string(64 * 1024, 'y')));
  EXPECT_EQ(b.ReadStatus(), 431);
  EXPECT_EQ(Healthz(), 200);
}

TEST_F(BoundedHttpServerTest, PipelinedAndKeptAliveRequestsAreAllAnswered) {
  Start();
  RawClient c(port_);
  ASSERT_TRUE(
      c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
             "PUT /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: 3\r\n"
             "\r\nabc"
             "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  const std::string all = c.ReadAll();
  size_t answers = 0;
  for (size_t at = all.find("HTTP/1.1 200"); at != std::string::npos;
       at = all.find("HTTP/1.1 200", at + 1)) {
    ++answers;
  }
  EXPECT_EQ(answers, 3u);
  EXPECT_NE(all.find("abc"), std::string::npos);
}

TEST_F(BoundedHttpServerTest, AtTheConnectionCapTheOldestIdleOneMakesRoom) {
  HttpServerLimits limits;
  limits.max_connections = 20;
  Start(limits);
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 40; ++i) held.push_back(std::make_unique<RawClient>(port_));
  EXPECT_EQ(Healthz(), 200);
  EXPECT_EQ(held.front()->ReadAll(), "");  // closed to make room
}

TEST_F(BoundedHttpServerTest, ASecondServerOnThePortFailsNamingIt) {
  Start();
  BoundedHttpServer second;
  StatusOr<int> bound = second.Bind("127.0.0.1", port_);
  ASSERT_FALSE(bound.ok());
  EXPECT_NE(bound.status().message().find("127.0.0.1:" + std::to_string(port_)), std::string::npos);
  EXPECT_NE(bound.status().message().find("in use"), std::string::npos);
  EXPECT_EQ(Healthz(), 200);
}

}  // namespace
}  // namespace grace
