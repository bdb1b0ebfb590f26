// NcclTransport: one rank (self send/receive through NCCL) and, with two GPUs, two ranks (an
// all-to-all-v, and a dead peer that must end in an abort and an error, not a hang). Skipped,
// with the reason, without the devices each needs.
#include <functional>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent/local_cluster.h"
#include "kernels/cuda_device.h"
#include "migrate/nccl_transport.h"
#include "migrate/tcp_transport.h"
#include "tests/testing/cuda_devices.h"

namespace grace {
namespace {

TEST(NcclTransportTest, SelfAllToAllV) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) GTEST_SKIP() << why;
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  TcpTransportOptions o;
  o.rendezvous_port = static_cast<uint16_t>(*port);
  auto tcp = TcpTransport::Connect(o);
  ASSERT_TRUE(tcp.ok()) << tcp.status().ToString();
  auto nccl = NcclTransport::Create(**tcp, 0);
  ASSERT_TRUE(nccl.ok()) << nccl.status().ToString();
  std::vector<float> host(1000);
  for (int i = 0; i < 1000; ++i) host[i] = i;
  DeviceArray<float> send, recv;
  ASSERT_TRUE(send.Upload(host.data(), host.size(), nullptr).ok());
  ASSERT_TRUE(recv.Resize(host.size()).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  std::vector<size_t> bytes = {host.size() * 4};
  ASSERT_TRUE((*nccl)->AllToAllV(send.data(), bytes, recv.data(), bytes).ok());
  std::vector<float> back(1000);
  ASSERT_TRUE(recv.Download(back.data(), back.size(), nullptr).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  EXPECT_EQ(back, host);
}

// Two ranks, one thread and one GPU each, over a TCP bootstrap; `body` runs on each.
void OnTwoRanks(const std::function<void(RankId, NcclTransport&)>& body,
                std::chrono::milliseconds timeout) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  std::vector<std::thread> threads;
  for (RankId r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      TcpTransportOptions o;
      o.rank = r;
      o.size = 2;
      o.rendezvous_port = static_cast<uint16_t>(*port);
      auto tcp = TcpTransport::Connect(o);
      ASSERT_TRUE(tcp.ok()) << tcp.status().ToString();
      auto nccl = NcclTransport::Create(**tcp, {.device = r, .timeout = timeout});
      ASSERT_TRUE(nccl.ok()) << nccl.status().ToString();
      body(r, **nccl);
    });
  }
  for (std::thread& t : threads) t.join();
}

TEST(NcclTransportTest, TwoRanksAllToAllV) {
  GRACE_REQUIRE_GPUS(2);
  OnTwoRanks(
      [](RankId r, NcclTransport& nccl) {
        ASSERT_TRUE(CudaStatus(cudaSetDevice(r), "cudaSetDevice").ok());
        // Rank r sends 100 (r + 1) floats to each rank, valued 1000 r + peer.
        const size_t mine = 100 * (r + 1);
        std::vector<float> host(2 * mine);
        for (size_t i = 0; i < host.size(); ++i) host[i] = 1000.0f * r + (i < mine ? 0 : 1);
        DeviceArray<float> send, recv;
        ASSERT_TRUE(send.Upload(host.data(), host.size(), nullptr).ok());
        ASSERT_TRUE(recv.Resize(100 * 3).ok());
        ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
        const std::vector<size_t> send_bytes = {mine * 4, mine * 4};
        const std::vector<size_t> recv_bytes = {100 * 4, 200 * 4};
        const Status s = nccl.AllToAllV(send.data(), send_bytes, recv.data(), recv_bytes);
        ASSERT_TRUE(s.ok()) << s.ToString();
        std::vector<float> back(300);
        ASSERT_TRUE(recv.Download(back.data(), back.size(), nullptr).ok());
        ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
        for (size_t i = 0; i < 300; ++i) {
          const int from = i < 100 ? 0 : 1;
          EXPECT_EQ(back[i], 1000.0f * from + r) << "element " << i;
        }
      },
      std::chrono::seconds(60));
}

TEST(NcclTransportTest, APeerThatNeverSendsEndsInAnAbortNotAHang) {
  GRACE_REQUIRE_GPUS(2);
  std::promise<void> checked;
  std::shared_future<void> rank0_done = checked.get_future().share();
  OnTwoRanks(
      [&](RankId r, NcclTransport& nccl) {
        if (r == 1) {
          // Rank 1 is "dead": alive, its communicator open, but it never joins the exchange.
          rank0_done.wait();
          return;
        }
        struct Release {
          std::promise<void>* p;
          ~Release() { p->set_value(); }
        } release{&checked};
        DeviceArray<float> buf;
        ASSERT_TRUE(buf.Resize(1024).ok());
        const Status s = nccl.Recv(1, buf.data(), 4096);
        ASSERT_FALSE(s.ok());
        EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
        EXPECT_NE(s.message().find("aborted"), std::string::npos) << s.ToString();
        // Refused from now on, at once.
        EXPECT_FALSE(nccl.Recv(1, buf.data(), 4096).ok());
      },
      std::chrono::milliseconds(1500));
}

}  // namespace
}  // namespace grace
