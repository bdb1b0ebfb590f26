// NcclMigrationChannel: a copy within one rank (NCCL's send to self, one GPU), chunks between two
// ranks arriving equal (two GPUs), and a rank that never joins the communicator, which must end
// in an abort and an error naming the set-up, not a hang (one GPU: the missing rank uses none).
// Skipped, with the reason, without the devices each needs.
#include "migrate/nccl_migration_channel.h"

#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent/local_cluster.h"
#include "migrate/tcp_transport.h"
#include "tests/testing/cuda_devices.h"

namespace grace {
namespace {

TcpTransportOptions Mesh(RankId rank, int size, int port) {
  TcpTransportOptions o;
  o.rank = rank;
  o.size = size;
  o.rendezvous_port = static_cast<uint16_t>(port);
  o.connect_timeout = std::chrono::milliseconds(10000);
  o.io_timeout = std::chrono::milliseconds(10000);
  return o;
}

std::vector<float> Ramp(size_t n, float base) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = base + static_cast<float>(i);
  return v;
}

std::vector<float> Download(const DeviceArray<float>& a, size_t n) {
  std::vector<float> out(n);
  EXPECT_TRUE(
      CudaStatus(cudaMemcpy(out.data(), a.data(), n * sizeof(float), cudaMemcpyDeviceToHost),
                 "cudaMemcpy")
          .ok());
  return out;
}

TEST(NcclMigrationChannelTest, CopiesWithinOneRankThroughASendToSelf) {
  GRACE_REQUIRE_GPUS(1);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  auto mesh = TcpTransport::Connect(Mesh(0, 1, *port));
  ASSERT_TRUE(mesh.ok()) << mesh.status().ToString();
  auto channel = NcclMigrationChannel::Create(**mesh, {.device = 0});
  ASSERT_TRUE(channel.ok()) << channel.status().ToString();
  const std::vector<float> host = Ramp(3000, 1);
  DeviceArray<float> from, to;
  ASSERT_TRUE(from.Upload(host.data(), host.size(), nullptr).ok());
  ASSERT_TRUE(to.Resize(host.size()).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  // Two uneven chunks, as the executor cuts them.
  const Status a = (*channel)->CopyChunk(from.data(), to.data(), 1000 * sizeof(float), "part 1");
  ASSERT_TRUE(a.ok()) << a.ToString();
  const Status b =
      (*channel)->CopyChunk(from.data() + 1000, to.data() + 1000, 2000 * sizeof(float), "part 2");
  ASSERT_TRUE(b.ok()) << b.ToString();
  EXPECT_EQ(Download(to, host.size()), host);
  // A send to itself is a copy, and says so.
  const Status self = (*channel)->SendChunk(0, from.data(), 4, "to self");
  EXPECT_EQ(self.code(), StatusCode::kInvalidArgument) << self.ToString();
}

TEST(NcclMigrationChannelTest, ChunksBetweenTwoRanksArriveEqual) {
  GRACE_REQUIRE_GPUS(2);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  const std::vector<float> host = Ramp(5000, 7);
  std::vector<float> received;
  std::vector<std::thread> threads;
  for (RankId r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto mesh = TcpTransport::Connect(Mesh(r, 2, *port));
      ASSERT_TRUE(mesh.ok()) << mesh.status().ToString();
      auto channel = NcclMigrationChannel::Create(**mesh, {.device = r});
      ASSERT_TRUE(channel.ok()) << channel.status().ToString();
      ASSERT_TRUE(CudaStatus(cudaSetDevice(r), "cudaSetDevice").ok());
      DeviceArray<float> buf;
      if (r == 0) {
        ASSERT_TRUE(buf.Upload(host.data(), host.size(), nullptr).ok());
      } else {
        ASSERT_TRUE(buf.Resize(host.size()).ok());
      }
      ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
      for (size_t off = 0; off < host.size(); off += 1500) {
        const size_t n = std::min<size_t>(1500, host.size() - off) * sizeof(float);
        const Status s = r == 0 ? (*channel)->SendChunk(1, buf.data() + off, n, "chunk")
                                : (*channel)->RecvChunk(0, buf.data() + off, n, "chunk");
        ASSERT_TRUE(s.ok()) << s.ToString();
      }
      if (r == 1) received = Download(buf, host.size());
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(received, host);
}

TEST(NcclMigrationChannelTest, ARankThatNeverJoinsEndsInAnAbortNotAHang) {
  GRACE_REQUIRE_GPUS(1);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  std::promise<void> rank0_done;
  std::shared_future<void> done = rank0_done.get_future().share();
  // Rank 1 is on the mesh and takes its part of the id exchange (one all-to-all of
  // NCCL_UNIQUE_ID_BYTES blocks), then never initialises its communicator.
  std::thread rank1([&] {
    auto mesh = TcpTransport::Connect(Mesh(1, 2, *port));
    ASSERT_TRUE(mesh.ok()) << mesh.status().ToString();
    std::vector<char> send(2 * 128), recv(2 * 128);
    ASSERT_TRUE((*mesh)->AllToAll(send.data(), recv.data(), 128).ok());
    done.wait();
  });
  {
    struct Release {
      std::promise<void>* p;
      ~Release() { p->set_value(); }
    } release{&rank0_done};
    auto mesh = TcpTransport::Connect(Mesh(0, 2, *port));
    ASSERT_TRUE(mesh.ok()) << mesh.status().ToString();
    auto channel = NcclMigrationChannel::Create(
        **mesh, {.device = 0, .timeout = std::chrono::milliseconds(1500)});
    ASSERT_FALSE(channel.ok());
    const Status& s = channel.status();
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
    EXPECT_NE(s.message().find("rank 0 forming the migration communicator of ranks 0..1"),
              std::string::npos)
        << s.ToString();
    EXPECT_NE(s.message().find("aborted"), std::string::npos) << s.ToString();
  }
  rank1.join();
}

}  // namespace
}  // namespace grace
