#include "daemon/agent_server.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <condition_variable>
#include <mutex>

#include <gtest/gtest.h>

#include "agent/local_cluster.h"
#include "tests/testing/byte_tamper_proxy.h"
#include "tests/testing/raw_client.h"
#include "tls/daemon_connection.h"

namespace grace {
namespace {

// Records listener calls; tests wait on them with a deadline instead of sleeping.
class RecordingEvents : public AgentEvents {
 public:
  StatusOr<Welcome> OnAgentJoined(const Hello& hello) override {
    std::lock_guard<std::mutex> lock(mu_);
    joined_.push_back(hello.agent_id);
    cv_.notify_all();
    if (hello.agent_id == "unwanted") return InvalidArgument("rank 7 is not in the topology");
    return Welcome{3, R"({"physical_to_logical_map":[[0]]})", {}, 0, 0, std::nullopt};
  }
  void OnAgentLost(const std::string& id, const std::string& reason) override {
    std::lock_guard<std::mutex> lock(mu_);
    lost_.push_back(id + ": " + reason);
    cv_.notify_all();
  }
  void OnMessage(const std::string& id, const WireMessage& m) override {
    std::lock_guard<std::mutex> lock(mu_);
    messages_.push_back(id + ":" + MessageTypeName(TypeOf(m)));
    cv_.notify_all();
  }
  void OnConnectionRejected(const std::string&, const std::string& reason) override {
    std::lock_guard<std::mutex> lock(mu_);
    rejected_.push_back(reason);
    cv_.notify_all();
  }
  void OnFrameRefused(const std::string& id, FrameRefusal why) override {
    std::lock_guard<std::mutex> lock(mu_);
    frames_refused_.push_back(id + ":" + FrameRefusalName(why));
  }

  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), pred);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> joined_, lost_, messages_, rejected_, frames_refused_;
};

// A blocking test agent speaking the wire protocol, over TLS keyed by `tls_secret` unless
// `tls` is kOff (DaemonConnection, the real agent's socket). Its waits are bounded (20 s) so
// that a broken server fails a test instead of hanging it; no timing is tested.
class TestAgent {
 public:
  explicit TestAgent(int port, AgentChannelTls tls = AgentChannelTls::kPsk,
                     const std::string& tls_secret = "cluster-secret")
      : conn_("127.0.0.1:" + std::to_string(port), tls, tls_secret) {
    open_ = conn_.Open(Deadline());
  }
  // How the connection (and with TLS, its handshake) went.
  const Status& open_status() const { return open_; }
  WireMessage Receive() {
    const auto deadline = Deadline();
    while (true) {
      WireMessage m;
      auto more = decoder_.Next(&m);
      if (!more.ok()) throw std::runtime_error(more.status().ToString());
      if (*more) return m;
      if (DaemonConnection::Clock::now() > deadline) throw std::runtime_error("no frame in 20 s");
      std::string bytes;
      if (Status s = conn_.Receive(std::chrono::milliseconds(100), &bytes); !s.ok()) {
        throw std::runtime_error(s.message());
      }
      decoder_.Append(bytes);
    }
  }
  void Send(const WireMessage& m) { SendRaw(EncodeFrame(m)); }
  // Bytes as the agent's own (inside TLS when it is on).
  void SendRaw(const std::string& bytes) {
    if (Status s = conn_.Send(bytes, Deadline()); !s.ok()) throw std::runtime_error(s.message());
  }
  // True when the server closes the connection within 20 s (a bound on a broken server, not a
  // timing under test).
  bool ClosedByServerSoon() {
    const auto deadline = Deadline();
    while (DaemonConnection::Clock::now() < deadline) {
      std::string bytes;
      if (!conn_.Receive(std::chrono::milliseconds(100), &bytes).ok()) return true;
    }
    return false;
  }
  bool ClosedByServer() { return ClosedByServerSoon(); }
  WireMessage Join(const std::string& id, const std::string& secret) {
    Challenge c = std::get<Challenge>(Receive());
    Hello h;
    h.agent_id = id;
    h.ranks = {0, 1};
    h.slots_per_rank = 4;
    h.proof = ProveSecret(secret, c.nonce);
    Send(h);
    return Receive();
  }

 private:
  static DaemonConnection::Clock::time_point Deadline() {
    return DaemonConnection::Clock::now() + std::chrono::seconds(20);
  }
  DaemonConnection conn_;
  Status open_;
  FrameDecoder decoder_;
};

class AgentServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}); }
  void Start(AgentServerOptions opt) {
    if (server_) server_->Stop();
    opt.port = 0;
    opt.cluster_secret = "cluster-secret";
    opt.heartbeat_ms = 50;
    opt.lost_after_ms = 1500;  // generous: CI machines are loaded
    opt.max_frame_bytes = 1 << 16;
    server_ = std::make_unique<AgentServer>(events_, opt);
    ASSERT_TRUE(server_->Start().ok());
  }
  // Options as SetUp's, changed by `edit`.
  template <typename Edit>
  void Restart(Edit edit) {
    AgentServerOptions opt;
    edit(opt);
    Start(opt);
  }
  void TearDown() override { server_->Stop(); }

  RecordingEvents events_;
  std::unique_ptr<AgentServer> server_;
};

TEST_F(AgentServerTest, GoodAgentJoinsAndReports) {
  TestAgent agent(server_->port());
  WireMessage w = agent.Join("node0", "cluster-secret");
  ASSERT_TRUE(std::holds_alternative<Welcome>(w));
  EXPECT_EQ(std::get<Welcome>(w).epoch, 3u);
  EXPECT_EQ(std::get<Welcome>(w).heartbeat_ms, 50u);
  LoadReport r;
  r.num_layers = 1;
  r.num_experts = 2;
  r.counts = {5, 6};
  agent.Send(r);
  agent.Send(Heartbeat{17, 3});
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.messages_.empty(); }));
  EXPECT_EQ(events_.messages_[0], "node0:LoadReport");
  ASSERT_TRUE(server_->Send("node0", Commit{4, 100}));
  WireMessage c = agent.Receive();
  EXPECT_EQ(std::get<Commit>(c).switch_step, 100u);
  auto agents = server_->Agents();
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0].state, "up");
}

TEST_F(AgentServerTest, WrongSecretIsRefusedAndOthersAreUnaffected) {
  TestAgent good(server_->port());
  ASSERT_TRUE(std::holds_alternative<Welcome>(good.Join("node0", "cluster-secret")));
  TestAgent bad(server_->port());
  WireMessage r = bad.Join("intruder", "guess");
  ASSERT_TRUE(std::holds_alternative<Refused>(r));
  EXPECT_NE(std::get<Refused>(r).reason.find("failed the cluster-secret proof"), std::string::npos);
  EXPECT_TRUE(bad.ClosedByServer());
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.rejected_.empty(); }));
  // The good agent still gets through.
  good.Send(Ready{4});
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.messages_.empty(); }));
  EXPECT_EQ(events_.messages_[0], "node0:Ready");
}

TEST_F(AgentServerTest, GarbageAndOversizedFramesCloseOnlyThatConnection) {
  TestAgent good(server_->port());
  ASSERT_TRUE(std::holds_alternative<Welcome>(good.Join("node0", "cluster-secret")));
  {
    TestAgent garbage(server_->port());
    (void)garbage.Receive();  // the challenge
    garbage.SendRaw(std::string(64, 'x'));
    EXPECT_TRUE(garbage.ClosedByServer());
  }
  {
    TestAgent huge(server_->port());
    (void)huge.Receive();
    std::string frame = EncodeFrame(Refused{std::string(100000, 'a')});  // over the 64 KiB limit
    huge.SendRaw(frame.substr(0, kFrameHeaderBytes));
    EXPECT_TRUE(huge.ClosedByServer());
  }
  ASSERT_TRUE(events_.WaitFor([&] { return events_.rejected_.size() >= 2; }));
  EXPECT_NE(events_.rejected_[0].find("bad frame magic"), std::string::npos);
  EXPECT_NE(events_.rejected_[1].find("exceeds the limit"), std::string::npos);
  good.Send(Ready{4});
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.messages_.empty(); }));
}

TEST_F(AgentServerTest, SilentAgentIsMarkedLostAndMayRejoin) {
  TestAgent quiet(server_->port());
  ASSERT_TRUE(std::holds_alternative<Welcome>(quiet.Join("node1", "cluster-secret")));
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.lost_.empty(); }));
  EXPECT_NE(events_.lost_[0].find("node1: silent for more than 1500 ms"), std::string::npos);
  auto agents = server_->Agents();
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0].state, "lost");
  TestAgent again(server_->port());
  ASSERT_TRUE(std::holds_alternative<Welcome>(again.Join("node1", "cluster-secret")));
  EXPECT_EQ(server_->Agents()[0].state, "up");
}

TEST_F(AgentServerTest, ListenerCanRefuseAnAgent) {
  TestAgent a(server_->port());
  WireMessage r = a.Join("unwanted", "cluster-secret");
  ASSERT_TRUE(std::holds_alternative<Refused>(r));
  EXPECT_NE(std::get<Refused>(r).reason.find("rank 7 is not in the topology"), std::string::npos);
}

TEST_F(AgentServerTest, AStrangerThatNeverProvesItselfIsClosedAtTheDeadline) {
  Restart([](AgentServerOptions& o) { o.handshake_timeout_ms = 200; });
  TestAgent silent(server_->port());
  (void)silent.Receive();  // the challenge; then nothing
  EXPECT_TRUE(silent.ClosedByServerSoon());
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.rejected_.empty(); }));
  EXPECT_NE(events_.rejected_[0].find("no proven Hello within 200 ms"), std::string::npos);
}

TEST_F(AgentServerTest, BeforeTheProofFramesAreSmall) {
  TestAgent big(server_->port());
  (void)big.Receive();
  // 32 KiB is within max_frame_bytes (64 KiB here) but not what a Hello needs.
  std::string frame = EncodeFrame(Refused{std::string(32 * 1024, 'a')});
  big.SendRaw(frame.substr(0, kFrameHeaderBytes));
  EXPECT_TRUE(big.ClosedByServerSoon());
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.rejected_.empty(); }));
  EXPECT_NE(events_.rejected_[0].find("exceeds the limit of 16384"), std::string::npos);
  // Once joined, the agent's limit is max_frame_bytes.
  TestAgent good(server_->port());
  ASSERT_TRUE(std::holds_alternative<Welcome>(good.Join("node0", "cluster-secret")));
  LoadReport r;
  r.num_layers = 1;
  r.num_experts = 8000;
  r.counts.assign(8000, 1);
  good.Send(r);
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.messages_.empty(); }));
  EXPECT_EQ(events_.messages_[0], "node0:LoadReport");
}

TEST_F(AgentServerTest, AFloodOfStrangersDoesNotLockOutAnAgent) {
  Restart([](AgentServerOptions& o) {
    o.max_pending = 16;
    o.handshake_timeout_ms = 60000;  // the cap alone must make room
  });
  // This process holds both ends: 150 strangers would take 300 descriptors, over this limit,
  // unless the server drops the oldest strangers.
  rlimit was{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &was), 0);
  rlimit low = was;
  low.rlim_cur = std::min<rlim_t>(was.rlim_cur, 256);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<std::unique_ptr<testing::RawClient>> strangers;
  for (int i = 0; i < 150; ++i) {
    strangers.push_back(std::make_unique<testing::RawClient>(server_->port()));
  }
  TestAgent good(server_->port());
  WireMessage w = good.Join("node0", "cluster-secret");
  strangers.clear();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &was), 0);
  EXPECT_TRUE(std::holds_alternative<Welcome>(w));
}

TEST_F(AgentServerTest, RefusalsAreRateLimitedAndSummed) {
  Restart([](AgentServerOptions& o) {
    o.refusals_per_window = 3;
    o.refusal_window_ms = 1000;
  });
  for (int i = 0; i < 30; ++i) {
    TestAgent bad(server_->port());
    ASSERT_TRUE(std::holds_alternative<Refused>(bad.Join("intruder", "guess")));
  }
  // Every refusal is accounted for, one by one or in a sum, and the sums arrive when their
  // window ends; however the 30 fell into windows, at most 3 per window came one by one.
  size_t single = 0, summed = 0, sums = 0;
  auto count = [&] {
    single = summed = sums = 0;
    for (const std::string& r : events_.rejected_) {
      const size_t at = r.find(" more connections refused");
      if (at == std::string::npos) {
        ++single;
      } else {
        ++sums;
        summed += std::stoul(r.substr(0, at));
      }
    }
    return single + summed == 30;
  };
  ASSERT_TRUE(events_.WaitFor(count));
  EXPECT_GE(sums, 1u);
  EXPECT_LE(single, 3 * (sums + 1));
}

TEST_F(AgentServerTest, AnAgentIdThatCouldForgeLogLinesIsRefused) {
  TestAgent forger(server_->port());
  WireMessage r = forger.Join("node0\n[info] graced: all fine", "cluster-secret");
  ASSERT_TRUE(std::holds_alternative<Refused>(r));
  EXPECT_NE(std::get<Refused>(r).reason.find("agent id must be"), std::string::npos);
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.rejected_.empty(); }));
  EXPECT_EQ(events_.rejected_[0].find('\n'), std::string::npos);
  TestAgent long_id(server_->port());
  EXPECT_TRUE(
      std::holds_alternative<Refused>(long_id.Join(std::string(65, 'a'), "cluster-secret")));
  EXPECT_TRUE(events_.joined_.empty());
}

TEST_F(AgentServerTest, AStepFarBeyondTheStepRateIsNeverPassedOn) {
  TestAgent agent(server_->port());
  ASSERT_TRUE(std::holds_alternative<Welcome>(agent.Join("node0", "cluster-secret")));
  agent.Send(Heartbeat{100, 3});
  agent.Send(Heartbeat{999999999, 3});  // what a frame injected on the path once made commit
  LoadReport r;
  r.step_from = 100;
  r.step_to = 999999999;
  r.num_layers = 1;
  r.num_experts = 2;
  r.counts = {5, 6};
  agent.Send(r);
  agent.Send(Switched{3, 999999999});
  agent.Send(Heartbeat{101, 3});
  ASSERT_TRUE(events_.WaitFor([&] { return events_.messages_.size() >= 2; }));
  std::lock_guard<std::mutex> lock(events_.mu_);
  EXPECT_EQ(events_.messages_, (std::vector<std::string>{"node0:Heartbeat", "node0:Heartbeat"}));
  EXPECT_EQ(server_->Agents()[0].step, 101u);
  // Each refusal reaches the listener (graced counts them on /metrics), before the next frame.
  EXPECT_EQ(events_.frames_refused_,
            std::vector<std::string>(
                3, "node0:" + std::string(FrameRefusalName(FrameRefusal::kStepBeyondRate))));
}

TEST_F(AgentServerTest, TheDaemonProvesTheSecretToAnAgentThatAsks) {
  TestAgent agent(server_->port());
  Challenge c = std::get<Challenge>(agent.Receive());
  Hello h;
  h.agent_id = "node0";
  h.ranks = {0, 1};
  h.slots_per_rank = 4;
  h.proof = ProveSecret("cluster-secret", c.nonce);
  h.daemon_nonce.emplace().fill(9);
  agent.Send(h);
  Welcome w = std::get<Welcome>(agent.Receive());
  ASSERT_TRUE(w.daemon_proof.has_value());
  EXPECT_TRUE(ProofsEqual(*w.daemon_proof, ProveSecret("cluster-secret", *h.daemon_nonce)));
}

TEST_F(AgentServerTest, ASecondServerOnThePortFails) {
  AgentServerOptions opt;
  opt.port = server_->port();
  AgentServer second(events_, opt);
  Status s = second.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(":" + std::to_string(server_->port())), std::string::npos);
}

// The agent channel's TLS (tls = "psk", the default): what issue #21 found injected on a
// plaintext channel is refused, and a mismatched setting or secret is named, not timed out.

TEST_F(AgentServerTest, AFrameInjectedOnThePathClosesTheConnectionAndIsNeverPassedOn) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  testing::ByteTamperProxy path({{*port, server_->port()}}, testing::ByteTamperProxy::kNoFlip);
  ASSERT_TRUE(path.Start().ok());
  TestAgent agent(*port);
  ASSERT_TRUE(agent.open_status().ok()) << agent.open_status().ToString();
  ASSERT_TRUE(std::holds_alternative<Welcome>(agent.Join("node0", "cluster-secret")));
  agent.Send(Heartbeat{10, 3});
  ASSERT_TRUE(events_.WaitFor([&] { return events_.messages_.size() >= 1; }));
  // The attack of #21: a well-formed plaintext Heartbeat far ahead, written onto the path.
  ASSERT_TRUE(path.InjectUpstream(EncodeFrame(Heartbeat{999999999, 3})));
  EXPECT_TRUE(agent.ClosedByServerSoon());
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.rejected_.empty(); }));
  std::lock_guard<std::mutex> lock(events_.mu_);
  EXPECT_NE(events_.rejected_[0].find("integrity"), std::string::npos) << events_.rejected_[0];
  EXPECT_EQ(events_.messages_, std::vector<std::string>{"node0:Heartbeat"});
  for (const AgentStatus& a : server_->Agents()) EXPECT_LT(a.step, 999999999u);
}

TEST_F(AgentServerTest, AnAgentWithAnotherSecretFailsTheTlsHandshakeNamingTheSecret) {
  TestAgent agent(server_->port(), AgentChannelTls::kPsk, "another-secret");
  ASSERT_FALSE(agent.open_status().ok());
  EXPECT_EQ(agent.open_status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(agent.open_status().message().find("cluster_secret"), std::string::npos)
      << agent.open_status().ToString();
  ASSERT_TRUE(events_.WaitFor([&] { return !events_.rejected_.empty(); }));
  EXPECT_TRUE(events_.joined_.empty());
}

TEST_F(AgentServerTest, APlaintextAgentMeetingTlsIsToldWhichSettingDiffers) {
  TestAgent agent(server_->port(), AgentChannelTls::kOff);
  ASSERT_TRUE(agent.open_status().ok());
  try {
    (void)agent.Receive();
    FAIL() << "a plaintext agent read a frame from a TLS graced";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tls"), std::string::npos) << e.what();
  }
}

TEST_F(AgentServerTest, ATlsAgentMeetingAPlaintextDaemonIsToldWhichSettingDiffers) {
  Restart([](AgentServerOptions& o) { o.tls = AgentChannelTls::kOff; });
  TestAgent agent(server_->port(), AgentChannelTls::kPsk);
  ASSERT_FALSE(agent.open_status().ok());
  EXPECT_EQ(agent.open_status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(agent.open_status().message().find("tls"), std::string::npos)
      << agent.open_status().ToString();
}

}  // namespace
}  // namespace grace
