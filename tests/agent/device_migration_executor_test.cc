// RunRankDeviceTransfers ([migration].transport = "nccl"): an expert staged into a spare device
// slot within one rank (one GPU, NCCL's send to self), which then serves like its source once
// the map is published; experts moved both ways between two ranks arriving byte for byte (two
// GPUs); and a peer that never sends, which must end in an abort naming it, with the spare
// slots returned, not a hang (two GPUs). Skipped, with the reason, without the devices.
#include "agent/device_migration_executor.h"

#include <algorithm>
#include <cmath>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent/local_cluster.h"
#include "kernels/cuda_expert_backend.h"
#include "kernels/cuda_grouped_ffn.h"
#include "migrate/nccl_migration_channel.h"
#include "tests/testing/cuda_devices.h"

namespace grace {
namespace {

// 2 layers, 2 local slots and 2 spares per layer; each weight matrix 32 x 64 bf16 (4096 bytes).
constexpr int kLayers = 2, kSlots = 2, kSpares = 2;
const ModelShape kShape{.num_experts = 8, .top_k = 2, .hidden = 64, .ffn = 32, .num_layers = 2};

std::unique_ptr<ExpertBackend> Backend(int device) {
  auto b = MakeCudaExpertBackend(kShape, kLayers, kSlots, device, kSpares);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(*b) : nullptr;
}

// Distinct weights per (layer, slot, base), loaded into local slot `slot`.
void Load(ExpertBackend& b, int layer, int slot, float base) {
  const size_t n = static_cast<size_t>(kShape.ffn) * kShape.hidden;
  std::vector<float> w(3 * n);
  for (size_t i = 0; i < w.size(); ++i) w[i] = base + 0.001f * static_cast<float>(i % 997);
  ASSERT_TRUE(b.LoadSlot(layer, slot, w.data(), w.data() + n, w.data() + 2 * n).ok());
}

// A physical slot's device bytes (w1 | w3 | w2).
std::vector<uint16_t> SlotBytes(ExpertBackend& b, int layer, int physical) {
  auto slot = CudaGroupedFfnOf(b)->SlotWeights(layer, physical);
  EXPECT_TRUE(slot.ok()) << slot.status().ToString();
  std::vector<uint16_t> out(3 * slot->elements);
  for (int part = 0; part < 3; ++part) {
    EXPECT_TRUE(CudaStatus(cudaMemcpy(out.data() + part * slot->elements, slot->part[part],
                                      slot->elements * sizeof(uint16_t), cudaMemcpyDeviceToHost),
                           "cudaMemcpy slot")
                    .ok());
  }
  return out;
}

DeviceTransferOptions Options(RankId rank, int size, int port) {
  DeviceTransferOptions o;
  o.transfer.mesh.rank = rank;
  o.transfer.mesh.size = size;
  o.transfer.mesh.rendezvous_port = static_cast<uint16_t>(port);
  o.transfer.mesh.connect_timeout = std::chrono::milliseconds(10000);
  o.transfer.slots_per_rank = kSlots;
  o.transfer.chunk_bytes = 1536;      // three chunks per matrix, the last one short
  o.transfer.max_bytes_per_s = 50e6;  // paced (never timed here)
  o.timeout = std::chrono::milliseconds(20000);
  return o;
}

TEST(DeviceMigrationExecutorTest, OneGpuStagesASpareSlotThatServesLikeItsSource) {
  GRACE_REQUIRE_GPUS(1);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  std::unique_ptr<ExpertBackend> b = Backend(0);
  ASSERT_NE(b, nullptr);
  Load(*b, 1, 0, 1.0f);
  Load(*b, 1, 1, -2.0f);
  const SlotMap current = SlotMap::Identity(kLayers, kSlots);
  // Layer 1's expert 5 in slot 0 gets a second copy in slot 1, within rank 0.
  const std::vector<WireTransfer> transfers = {{1, 5, 0, 1, 12288}};
  auto r = RunRankDeviceTransfers(Options(0, 1, *port), transfers, *b, current);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const BackendStaging& st = r->staging;
  ASSERT_EQ(st.acquired.size(), 1u);
  const int p = st.acquired[0].second;
  EXPECT_GE(p, kSlots) << "staged into a spare";
  EXPECT_EQ(st.replaced, (std::vector<PhysicalSlot>{{1, 1}}));
  ASSERT_NE(st.map, nullptr);
  EXPECT_EQ(st.map->physical(1, 1), p);
  EXPECT_EQ(st.map->physical(1, 0), 0);
  EXPECT_EQ(r->copies.bytes_in, 12288u);
  EXPECT_EQ(r->copies.bytes_sent, 0u);
  ASSERT_EQ(r->copies.staged.size(), 1u);
  EXPECT_EQ(r->copies.staged[0].weights, nullptr) << "nothing went through host memory";
  EXPECT_EQ(SlotBytes(*b, 1, p), SlotBytes(*b, 1, 0));

  // The switch only publishes the map: slot 1 now computes what slot 0 does.
  ASSERT_TRUE(b->UseSlotMap(st.map).ok());
  const int rows = 3;
  std::vector<float> in(2 * rows * kShape.hidden), out(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = 0.01f * static_cast<float>(i % (rows * 64));
  const int32_t offsets[kSlots + 1] = {0, rows, 2 * rows};
  ASSERT_TRUE(b->Run(1, in.data(), offsets, out.data()).ok());
  const size_t half = static_cast<size_t>(rows) * kShape.hidden;
  for (size_t i = 0; i < half; ++i) {
    ASSERT_NEAR(out[half + i], out[i], 1e-5f * std::max(1.0f, std::fabs(out[i]))) << "value " << i;
  }
  EXPECT_NE(out[0], 0.0f);
}

TEST(DeviceMigrationExecutorTest, TwoGpusMoveExpertsBothWaysByteForByte) {
  GRACE_REQUIRE_GPUS(2);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  std::unique_ptr<ExpertBackend> b[2] = {Backend(0), Backend(1)};
  ASSERT_NE(b[0], nullptr);
  ASSERT_NE(b[1], nullptr);
  Load(*b[0], 0, 1, 3.0f);   // global slot 1
  Load(*b[1], 1, 1, -4.0f);  // global slot 3
  const std::vector<WireTransfer> transfers = {
      {0, 2, 1, 2, 12288},  // layer 0: rank 0's slot 1 to rank 1's slot 0
      {1, 6, 3, 0, 12288},  // layer 1: rank 1's slot 1 to rank 0's slot 0
  };
  const SlotMap current = SlotMap::Identity(kLayers, kSlots);
  StatusOr<DeviceStagedCopies> r[2] = {Unavailable("not run"), Unavailable("not run")};
  std::vector<std::thread> threads;
  for (RankId rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      r[rank] = RunRankDeviceTransfers(Options(rank, 2, *port), transfers, *b[rank], current);
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(r[0].ok()) << r[0].status().ToString();
  ASSERT_TRUE(r[1].ok()) << r[1].status().ToString();
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(r[rank]->copies.bytes_in, 12288u) << "rank " << rank;
    EXPECT_EQ(r[rank]->copies.bytes_sent, 12288u) << "rank " << rank;
  }
  const int on1 = r[1]->staging.map->physical(0, 0), on0 = r[0]->staging.map->physical(1, 0);
  EXPECT_GE(on1, kSlots);
  EXPECT_GE(on0, kSlots);
  EXPECT_EQ(SlotBytes(*b[1], 0, on1), SlotBytes(*b[0], 0, 1));
  EXPECT_EQ(SlotBytes(*b[0], 1, on0), SlotBytes(*b[1], 1, 1));
}

TEST(DeviceMigrationExecutorTest, APeerThatNeverSendsEndsInAnAbortNotAHang) {
  GRACE_REQUIRE_GPUS(2);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  std::unique_ptr<ExpertBackend> b = Backend(0);
  ASSERT_NE(b, nullptr);
  const int free_before = b->free_slots(0);
  std::promise<void> rank0_done;
  std::shared_future<void> done = rank0_done.get_future().share();
  // Rank 1 joins the mesh and the communicator, then never takes part in the copy.
  std::thread rank1([&] {
    auto mesh = TcpTransport::Connect(Options(1, 2, *port).transfer.mesh);
    ASSERT_TRUE(mesh.ok()) << mesh.status().ToString();
    auto channel = NcclMigrationChannel::Create(**mesh, {.device = 1});
    ASSERT_TRUE(channel.ok()) << channel.status().ToString();
    done.wait();
  });
  {
    struct Release {
      std::promise<void>* p;
      ~Release() { p->set_value(); }
    } release{&rank0_done};
    DeviceTransferOptions o = Options(0, 2, *port);
    o.timeout = std::chrono::milliseconds(1500);
    const std::vector<WireTransfer> transfers = {{0, 3, 2, 0, 12288}};  // rank 1 to rank 0
    auto r = RunRankDeviceTransfers(o, transfers, *b, SlotMap::Identity(kLayers, kSlots));
    ASSERT_FALSE(r.ok());
    const Status& s = r.status();
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
    EXPECT_NE(s.message().find("receiving from rank 1"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("layer 0 expert 3"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("aborted"), std::string::npos) << s.ToString();
    EXPECT_EQ(b->free_slots(0), free_before) << "the spare it took went back to the pool";
  }
  rank1.join();
}

}  // namespace
}  // namespace grace
