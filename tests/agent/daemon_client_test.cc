// DaemonClient's handshake against graced's AgentServer and against an impostor: the agent
// proves the cluster secret to the daemon, and the daemon must prove it back (Welcome's
// daemon_proof) before the agent takes any placement or command from it. Then its liveness
// check: a quiet connection stays up on graced's heartbeats, a half-open one is redialled.
#include "agent/daemon_client.h"

#include <boost/asio.hpp>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "agent/local_cluster.h"
#include "agent/replay.h"
#include "daemon/agent_server.h"
#include "tests/testing/byte_tamper_proxy.h"

namespace grace {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class WelcomingEvents : public AgentEvents {
 public:
  StatusOr<Welcome> OnAgentJoined(const Hello&) override {
    return Welcome{2, R"({"physical_to_logical_map":[[0, 1]]})", {}, 0, 0, std::nullopt};
  }
  void OnAgentLost(const std::string&, const std::string&) override {}
  void OnMessage(const std::string&, const WireMessage&) override {}
  void OnConnectionRejected(const std::string&, const std::string&) override {}
};

AgentConfig ConfigFor(int port) {
  AgentConfig c;
  c.topology = {.nodes = 1, .gpus_per_node = 1, .slots_per_gpu = 2};
  c.agent_id = "agent0";
  c.daemon_address = "127.0.0.1:" + std::to_string(port);
  c.cluster_secret = "cluster-secret";
  c.connect_timeout_ms = 3000;
  return c;
}

// graced's agent listener on a free port, knowing ConfigFor's secret.
AgentServerOptions ServerOptions() {
  AgentServerOptions o;
  o.port = 0;
  o.cluster_secret = "cluster-secret";
  return o;
}

TEST(DaemonClientTest, GracedProvesTheSecretBack) {
  WelcomingEvents events;
  AgentServer server(events, ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  const AgentConfig c = ConfigFor(server.port());
  DaemonClient client(c);
  StatusOr<Welcome> w = client.Connect(0);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->epoch, 2u);
  server.Stop();
}

TEST(DaemonClientTest, AnImpostorThatCannotProveTheSecretIsNotFollowed) {
  // It speaks the protocol but does not know the secret: it answers any Hello with a Welcome
  // (epoch 9) and no proof, or a made-up one.
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const int port = acceptor.local_endpoint().port();
  std::thread impostor([&] {
    for (int round = 0; round < 2; ++round) {
      tcp::socket s(io);
      boost::system::error_code ec;
      acceptor.accept(s, ec);
      if (ec) return;
      asio::write(s, asio::buffer(EncodeFrame(Challenge{})), ec);
      FrameDecoder d;
      WireMessage m;
      std::array<char, 4096> buf;
      while (!ec) {
        auto more = d.Next(&m);
        if (!more.ok() || *more) break;
        d.Append(std::string_view(buf.data(), s.read_some(asio::buffer(buf), ec)));
      }
      Welcome w{9, R"({"physical_to_logical_map":[[1, 0]]})", {}, 100, 100, std::nullopt};
      if (round == 1) w.daemon_proof.emplace().fill(7);
      asio::write(s, asio::buffer(EncodeFrame(w)), ec);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  AgentConfig c = ConfigFor(port);
  // Plaintext on purpose: the impostor speaks frames in the clear so that the proof inside
  // the handshake is what stops it (with tls = "psk" it could not even finish TLS:
  // tests/tls/agent_channel_test.cc).
  c.daemon_tls = AgentChannelTls::kOff;
  for (int round = 0; round < 2; ++round) {
    DaemonClient client(c);
    StatusOr<Welcome> w = client.Connect(0);
    ASSERT_FALSE(w.ok());
    EXPECT_NE(w.status().message().find("did not prove the cluster secret"), std::string::npos)
        << w.status().ToString();
  }
  impostor.join();
}

// Counts the agent's joins; the Welcome is WelcomingEvents'.
class JoinCountingEvents : public WelcomingEvents {
 public:
  StatusOr<Welcome> OnAgentJoined(const Hello& h) override {
    joins.fetch_add(1);
    return WelcomingEvents::OnAgentJoined(h);
  }
  std::atomic<int> joins{0};
};

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

TEST(DaemonClientTest, AQuietConnectionStaysUpAndAHalfOpenOneIsRedialled) {
  // graced (its AgentServer) behind a relay that can turn the agent's connection half-open:
  // bytes dropped both ways, no close seen by either end, the agent's sends still succeed.
  // graced's own lost-agent timeout is set far out, so that only the agent can notice.
  JoinCountingEvents events;
  AgentServerOptions o = ServerOptions();
  o.heartbeat_ms = 100;
  o.report_ms = 200;
  o.lost_after_ms = 60000;
  AgentServer server(events, o);
  ASSERT_TRUE(server.Start().ok());
  StatusOr<int> relay_port = PickFreePort();
  StatusOr<int> mesh_port = PickFreePort();
  ASSERT_TRUE(relay_port.ok() && mesh_port.ok());
  testing::ByteTamperProxy relay({{*relay_port, server.port()}}, testing::ByteTamperProxy::kNoFlip);
  ASSERT_TRUE(relay.Start().ok());

  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("grace_daemon_silence_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string text =
      "[cluster]\nnodes = 1\nranks_per_node = 1\nslots_per_rank = 2\n"
      "[transport]\nrendezvous = \"127.0.0.1:" +
      std::to_string(*mesh_port) +
      "\"\n[model]\nexperts = 2\ntop_k = 1\nhidden = 8\nffn = 8\nlayers = 1\n"
      "[replay]\nsteps = 100000\ntokens_per_rank = 4\nsteps_per_second = 50\n"
      "[output]\ndir = \"" +
      dir.string() + "\"\n[daemon]\naddress = \"127.0.0.1:" + std::to_string(*relay_port) +
      "\"\ncluster_secret = \"cluster-secret\"\nagent_id = \"agent0\"\n";
  StatusOr<AgentConfig> config = ParseAgentConfig(text, "daemon_silence.toml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  std::atomic<bool> stop{false};
  Status ran;
  std::thread agent([&] { ran = RunAgent(*config, {}, &stop); });

  const auto limit = DaemonSilenceLimit(o.heartbeat_ms);
  EXPECT_TRUE(WaitFor([&] { return events.joins.load() >= 1; }, std::chrono::seconds(10)));
  // Past the silence limit on a healthy connection that carries nothing but graced's
  // heartbeats (this test's graced sends no PREPARE): no redial.
  std::this_thread::sleep_for(limit + std::chrono::milliseconds(1000));
  EXPECT_EQ(events.joins.load(), 1) << "the agent redialled a healthy connection";

  relay.Blackhole();
  const auto cut = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return events.joins.load() >= 2; }, limit + std::chrono::seconds(5)))
      << "the agent did not notice its half-open daemon connection";
  const auto redialled = std::chrono::steady_clock::now() - cut;
  EXPECT_GE(redialled, limit - std::chrono::milliseconds(200));

  stop = true;
  agent.join();
  EXPECT_TRUE(ran.ok()) << ran.ToString();
  relay.Stop();
  server.Stop();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace grace
