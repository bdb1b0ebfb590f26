// RunRankTransfers on two ranks (threads) over a loopback migration mesh: copies land in staging
// buffers of the destination slots, in chunks, a slot may be both source and destination, and a
// cancelled migration stops. Weights whose bytes change on the way fail their source's digest
// and are not staged.
#include "agent/migration_executor.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <thread>

#include "agent/local_cluster.h"
#include "migrate/weight_digest.h"

namespace grace {
namespace {

constexpr size_t kFloats = 3 * 4 * 8;

std::shared_ptr<const std::vector<float>> Weights(float base) {
  auto v = std::make_shared<std::vector<float>>(kFloats);
  std::iota(v->begin(), v->end(), base);
  return v;
}

TransferOptions Options(RankId rank, int port, const std::atomic<bool>* cancel) {
  TransferOptions o;
  o.mesh.rank = rank;
  o.mesh.size = 2;
  o.mesh.rendezvous_port = static_cast<uint16_t>(port);
  o.mesh.connect_timeout = std::chrono::milliseconds(10000);
  o.slots_per_rank = 2;
  o.expert_floats = kFloats;
  o.chunk_bytes = 100;  // several chunks per expert
  o.cancel = cancel;
  return o;
}

TEST(MigrationExecutorTest, StagesEveryDestinationSlotWithTheSourceWeights) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  const uint64_t bytes = kFloats * sizeof(float);
  // Rank 0 holds experts 0, 1 in slots 0, 1; rank 1 holds 2, 3 in slots 2, 3.
  const RankSlotWeights rank0 = {{Weights(0), Weights(1000)}};
  const RankSlotWeights rank1 = {{Weights(2000), Weights(3000)}};
  const std::vector<WireTransfer> transfers = {
      {0, 0, 0, 3, bytes},  // rank 0 -> rank 1, over slot 3 whose expert moves too
      {0, 2, 2, 1, bytes},  // rank 1 -> rank 0
      {0, 3, 3, 2, bytes},  // inside rank 1
  };
  std::atomic<bool> cancel{false};
  StatusOr<StagedCopies> r0 = Unavailable(""), r1 = Unavailable("");
  std::thread t0([&] { r0 = RunRankTransfers(Options(0, *port, &cancel), transfers, rank0); });
  std::thread t1([&] { r1 = RunRankTransfers(Options(1, *port, &cancel), transfers, rank1); });
  t0.join();
  t1.join();
  ASSERT_TRUE(r0.ok()) << r0.status().ToString();
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();

  ASSERT_EQ(r0->staged.size(), 1u);
  EXPECT_EQ(r0->staged[0].slot, 1);
  EXPECT_EQ(r0->staged[0].expert, 2);
  EXPECT_EQ(*r0->staged[0].weights, *rank1[0][0]);
  EXPECT_EQ(r0->bytes_in, bytes);
  EXPECT_EQ(r0->bytes_sent, bytes);

  ASSERT_EQ(r1->staged.size(), 2u);
  EXPECT_EQ(r1->staged[0].slot, 3);
  EXPECT_EQ(*r1->staged[0].weights, *rank0[0][0]);
  EXPECT_EQ(r1->staged[1].slot, 2);
  EXPECT_EQ(*r1->staged[1].weights, *rank1[0][1]);  // the old slot 3, untouched by staging
  EXPECT_EQ(r1->bytes_in, 2 * bytes);
  EXPECT_EQ(r1->bytes_sent, bytes);
}

TEST(MigrationExecutorTest, CancelledBeforeTheFirstChunkAborts) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  const uint64_t bytes = kFloats * sizeof(float);
  const RankSlotWeights rank0 = {{Weights(0), Weights(1000)}};
  const RankSlotWeights rank1 = {{Weights(2000), Weights(3000)}};
  const std::vector<WireTransfer> transfers = {{0, 0, 0, 3, bytes}};
  std::atomic<bool> cancel{true};
  StatusOr<StagedCopies> r0 = Unavailable(""), r1 = Unavailable("");
  std::thread t0([&] { r0 = RunRankTransfers(Options(0, *port, &cancel), transfers, rank0); });
  std::thread t1([&] { r1 = RunRankTransfers(Options(1, *port, &cancel), transfers, rank1); });
  t0.join();
  t1.join();
  EXPECT_EQ(r0.status().code(), StatusCode::kAborted);
  EXPECT_EQ(r1.status().code(), StatusCode::kAborted);
}

// The daemon's byte count is its cost model's (bf16 experts of the cluster it plans for); the
// agent copies its own expert buffers, whatever size the daemon modeled.
TEST(MigrationExecutorTest, CopiesItsOwnExpertSizeWhateverTheDaemonModels) {
  const RankSlotWeights rank0 = {{Weights(0), Weights(1000)}};
  const std::vector<WireTransfer> transfers = {{0, 0, 0, 1, 12345}};
  TransferOptions o = Options(0, 1, nullptr);
  o.mesh.size = 1;
  auto r = RunRankTransfers(o, transfers, rank0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->staged.size(), 1u);
  EXPECT_EQ(r->bytes_in, o.expert_floats * sizeof(float));
}

TEST(MigrationExecutorTest, WithTheClusterSecretEveryCopyPassesItsDigest) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  const uint64_t bytes = kFloats * sizeof(float);
  const RankSlotWeights rank0 = {{Weights(0), Weights(1000)}};
  const RankSlotWeights rank1 = {{Weights(2000), Weights(3000)}};
  const std::vector<WireTransfer> transfers = {{0, 0, 0, 3, bytes}, {0, 2, 2, 1, bytes}};
  StatusOr<StagedCopies> r0 = Unavailable(""), r1 = Unavailable("");
  auto options = [&](RankId rank) {
    TransferOptions o = Options(rank, *port, nullptr);
    o.mesh.cluster_secret = "cluster-secret";
    o.target_epoch = 4;
    return o;
  };
  std::thread t0([&] { r0 = RunRankTransfers(options(0), transfers, rank0); });
  std::thread t1([&] { r1 = RunRankTransfers(options(1), transfers, rank1); });
  t0.join();
  t1.join();
  ASSERT_TRUE(r0.ok()) << r0.status().ToString();
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(*r0->staged[0].weights, *rank1[0][0]);
  EXPECT_EQ(*r1->staged[0].weights, *rank0[0][0]);
}

// Rank 1 stands in for a path that corrupts one chunk: it sends expert 2's bytes with one byte
// changed in the second chunk, then the digest its real source computes over the true bytes.
TEST(MigrationExecutorTest, AChunkCorruptedInFlightFailsItsDigestAndIsNotStaged) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  const uint64_t bytes = kFloats * sizeof(float);
  const RankSlotWeights rank0 = {{Weights(0), Weights(1000)}};
  const std::vector<WireTransfer> transfers = {{0, 2, 2, 1, bytes}};  // rank 1 -> rank 0
  TransferOptions o0 = Options(0, *port, nullptr);
  o0.mesh.cluster_secret = "cluster-secret";
  o0.target_epoch = 4;
  StatusOr<StagedCopies> r0 = Unavailable("");
  std::thread t0([&] { r0 = RunRankTransfers(o0, transfers, rank0); });

  TransferOptions o1 = Options(1, *port, nullptr);
  o1.mesh.cluster_secret = "cluster-secret";
  auto mesh = TcpTransport::Connect(o1.mesh);
  ASSERT_TRUE(mesh.ok()) << mesh.status().ToString();
  std::vector<float> truth = *Weights(2000);
  auto digester = ExpertDigester::FromClusterSecret("cluster-secret");
  ASSERT_TRUE(digester.ok());
  const ExpertDigest digest =
      digester->Digest(0, 2, 4, {reinterpret_cast<const uint8_t*>(truth.data()), bytes});
  std::vector<uint8_t> on_the_wire(bytes);
  std::memcpy(on_the_wire.data(), truth.data(), bytes);
  on_the_wire[o1.chunk_bytes + 3] ^= 0x40;
  for (size_t off = 0; off < bytes; off += o1.chunk_bytes) {
    const size_t n = std::min(o1.chunk_bytes, bytes - off);
    ASSERT_TRUE((*mesh)->Send(0, on_the_wire.data() + off, n).ok());
  }
  ASSERT_TRUE((*mesh)->Send(0, digest.data(), digest.size()).ok());
  t0.join();

  ASSERT_FALSE(r0.ok());
  EXPECT_TRUE(IsWeightIntegrityError(r0.status())) << r0.status().ToString();
  EXPECT_NE(r0.status().message().find("layer index 0 expert 2 from rank 1 for epoch 4"),
            std::string::npos)
      << r0.status().message();
}

}  // namespace
}  // namespace grace
