// TcpTransport on loopback: 4 ranks as threads, all-to-all-v with uneven sizes, point-to-point,
// size mismatches reported; strangers at the rendezvous and ranks of another cluster dropped.
// NcclTransport: skipped without a GPU.
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio.hpp>

#include <gtest/gtest.h>

#include "agent/local_cluster.h"
#include "migrate/tcp_transport.h"

namespace grace {
namespace {

// Runs body(transport) on `n` ranks connected over loopback.
template <typename Body>
void OnRanks(int n, Body body, const std::string& secret = "") {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      TcpTransportOptions o;
      o.rank = r;
      o.size = n;
      o.rendezvous_port = static_cast<uint16_t>(*port);
      o.connect_timeout = std::chrono::milliseconds(10000);
      o.cluster_secret = secret;
      auto t = TcpTransport::Connect(o);
      ASSERT_TRUE(t.ok()) << t.status().ToString();
      body(**t);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(TcpTransportTest, AllToAllVDeliversEveryBlock) {
  const int n = 4;
  OnRanks(n, [&](Transport& t) {
    const int me = t.rank();
    // Rank r sends (r + 1) * (p + 1) * 1000 ints of value r * 100 + p to rank p.
    std::vector<size_t> send_bytes(n), recv_bytes(n);
    std::vector<int> send;
    for (int p = 0; p < n; ++p) {
      const size_t count = (me + 1) * (p + 1) * 1000;
      send_bytes[p] = count * sizeof(int);
      send.insert(send.end(), count, me * 100 + p);
      recv_bytes[p] = (p + 1) * (me + 1) * 1000 * sizeof(int);
    }
    std::vector<int> recv(std::accumulate(recv_bytes.begin(), recv_bytes.end(), size_t{0}) / 4);
    for (int round = 0; round < 3; ++round) {
      std::fill(recv.begin(), recv.end(), -1);
      Status s = t.AllToAllV(send.data(), send_bytes, recv.data(), recv_bytes);
      ASSERT_TRUE(s.ok()) << s.ToString();
      size_t at = 0;
      for (int p = 0; p < n; ++p) {
        for (size_t i = 0; i < recv_bytes[p] / 4; ++i) ASSERT_EQ(recv[at + i], p * 100 + me);
        at += recv_bytes[p] / 4;
      }
    }
    ASSERT_TRUE(t.Barrier().ok());
  });
}

TEST(TcpTransportTest, PointToPointAndSizeMismatch) {
  OnRanks(2, [&](Transport& t) {
    std::vector<float> buf(1 << 16);
    if (t.rank() == 0) {
      std::iota(buf.begin(), buf.end(), 0.0f);
      ASSERT_TRUE(t.Send(1, buf.data(), buf.size() * 4).ok());
      ASSERT_TRUE(t.Send(1, buf.data(), 8).ok());
    } else {
      ASSERT_TRUE(t.Recv(0, buf.data(), buf.size() * 4).ok());
      EXPECT_EQ(buf[12345], 12345.0f);
      Status s = t.Recv(0, buf.data(), 4);  // sender sent 8
      EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    }
  });
}

// Connects to 127.0.0.1:port until it answers, then behaves as `kind` says and closes.
void Stranger(int port, const std::string& kind) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  const boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"),
                                          static_cast<uint16_t>(port));
  boost::system::error_code ec;
  for (int i = 0; i < 500; ++i) {
    s.connect(ep, ec);
    if (!ec) break;
    s.close();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (kind == "garbage") boost::asio::write(s, boost::asio::buffer(std::string(200, 'x')), ec);
  if (kind == "silent") std::this_thread::sleep_for(std::chrono::milliseconds(2500));
}

TEST(TcpTransportTest, StrangersAtTheRendezvousDoNotBreakTheMesh) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  // They connect before the real ranks: a connect-and-close, garbage, a silent one.
  std::vector<std::thread> strangers;
  for (const char* kind : {"close", "garbage", "silent"}) {
    strangers.emplace_back([&, kind] { Stranger(*port, kind); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (const std::string secret : {"", "s3cret"}) {
    std::vector<std::thread> ranks;
    std::vector<Status> got(3);
    for (int r = 0; r < 3; ++r) {
      ranks.emplace_back([&, r] {
        TcpTransportOptions o;
        o.rank = r;
        o.size = 3;
        o.rendezvous_port = static_cast<uint16_t>(*port);
        o.connect_timeout = std::chrono::milliseconds(10000);
        o.hello_timeout = std::chrono::milliseconds(500);
        o.cluster_secret = secret;
        auto t = TcpTransport::Connect(o);
        got[r] = t.status();
        if (t.ok()) {
          int token = 7 + r, back = 0;
          SendOp send{(r + 1) % 3, &token, sizeof(token)};
          RecvOp recv{(r + 2) % 3, &back, sizeof(back)};
          got[r] = (*t)->Group({&send, 1}, {&recv, 1});
          if (got[r].ok() && back != 7 + (r + 2) % 3) got[r] = DataLoss("wrong token");
        }
      });
    }
    for (auto& t : ranks) t.join();
    for (int r = 0; r < 3; ++r)
      EXPECT_TRUE(got[r].ok()) << secret << " rank " << r << ": " << got[r].ToString();
    if (secret.empty()) {
      for (const char* kind : {"close", "garbage"}) {
        strangers.emplace_back([&, kind] { Stranger(*port, kind); });
      }
    }
  }
  for (auto& t : strangers) t.join();
}

TEST(TcpTransportTest, ARankWithAnotherSecretIsNotAdmitted) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  std::vector<Status> got(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      TcpTransportOptions o;
      o.rank = r;
      o.size = 2;
      o.rendezvous_port = static_cast<uint16_t>(*port);
      o.connect_timeout = std::chrono::milliseconds(1500);
      o.hello_timeout = std::chrono::milliseconds(300);
      o.cluster_secret = r == 0 ? "ours" : "theirs";
      got[r] = TcpTransport::Connect(o).status();
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_FALSE(got[0].ok());
  EXPECT_FALSE(got[1].ok());
  EXPECT_NE(got[1].message().find("cluster-secret proof"), std::string::npos) << got[1].ToString();
}

TEST(TcpTransportTest, MissingPeerTimesOut) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  TcpTransportOptions o;
  o.rank = 1;
  o.size = 2;
  o.rendezvous_port = static_cast<uint16_t>(*port);
  o.connect_timeout = std::chrono::milliseconds(300);
  auto t = TcpTransport::Connect(o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("connect to 127.0.0.1"), std::string::npos)
      << t.status().ToString();
}

}  // namespace
}  // namespace grace
