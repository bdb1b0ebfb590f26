// DaemonClient's handshake against graced's AgentServer and against an impostor: the agent
// proves the cluster secret to the daemon, and the daemon must prove it back (Welcome's
// daemon_proof) before the agent takes any placement or command from it.
#include "agent/daemon_client.h"

#include <boost/asio.hpp>
#include <thread>

#include <gtest/gtest.h>

#include "daemon/agent_server.h"

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

TEST(DaemonClientTest, GracedProvesTheSecretBack) {
  WelcomingEvents events;
  AgentServerOptions o;
  o.port = 0;
  o.cluster_secret = "cluster-secret";
  AgentServer server(events, o);
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

}  // namespace
}  // namespace grace
