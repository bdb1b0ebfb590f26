// The CUDA kernels and backend against their CPU twins; skipped (with the reason) without a GPU.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cuda/device_routing_table.h"
#include "kernels/cuda/launchers.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_expert_backend.h"
#include "kernels/expert_weights.h"
#include "kernels/gate.h"
#include "kernels/load_stats.h"
#include "kernels/permute.h"
#include "kernels/select_replicas.h"
#include "kernels/unpermute_combine.h"

namespace grace {
namespace {

#define GRACE_REQUIRE_GPU()                              \
  do {                                                   \
    std::string why;                                     \
    if (!CudaDeviceAvailable(&why)) GTEST_SKIP() << why; \
  } while (false)

TEST(CudaKernelsTest, GateTopKMatchesCpu) {
  GRACE_REQUIRE_GPU();
  const int tokens = 64, h = 32, e = 16, k = 4;
  ModelShape s{.num_experts = e, .top_k = k, .hidden = h, .ffn = 8, .num_layers = 1};
  ExpertWeights w = GenerateExpertWeights(s, 3);
  std::vector<float> x(tokens * h);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.37f * i);
  std::vector<int32_t> ids(tokens * k), dids(tokens * k);
  std::vector<float> wt(tokens * k), dwt(tokens * k);
  GateTopK(x.data(), w.gate[0].data(), tokens, h, e, k, ids.data(), wt.data());
  DeviceArray<float> dx, dg, dw;
  DeviceArray<int32_t> di;
  ASSERT_TRUE(dx.Upload(x.data(), x.size(), nullptr).ok());
  ASSERT_TRUE(dg.Upload(w.gate[0].data(), w.gate[0].size(), nullptr).ok());
  ASSERT_TRUE(di.Resize(ids.size()).ok());
  ASSERT_TRUE(dw.Resize(wt.size()).ok());
  cuda::GateTopK(dx.data(), dg.data(), tokens, h, e, k, di.data(), dw.data(), nullptr);
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  ASSERT_TRUE(di.Download(dids.data(), dids.size(), nullptr).ok());
  ASSERT_TRUE(dw.Download(dwt.data(), dwt.size(), nullptr).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  EXPECT_EQ(ids, dids);
  for (size_t i = 0; i < wt.size(); ++i) EXPECT_NEAR(wt[i], dwt[i], 1e-5);
}

TEST(CudaKernelsTest, ExpertBackendMatchesCpu) {
  GRACE_REQUIRE_GPU();
  ModelShape s{.num_experts = 4, .top_k = 2, .hidden = 64, .ffn = 32, .num_layers = 1};
  ExpertWeights w = GenerateExpertWeights(s, 11);
  auto gpu = MakeCudaExpertBackend(s, 1, 4, 0);
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  auto cpu = MakeCpuExpertBackend(s, 1, 4);
  for (int e = 0; e < 4; ++e) {
    ASSERT_TRUE((*gpu)->LoadSlot(0, e, w.W1(0, e), w.W3(0, e), w.W2(0, e)).ok());
    ASSERT_TRUE(cpu->LoadSlot(0, e, w.W1(0, e), w.W3(0, e), w.W2(0, e)).ok());
  }
  std::vector<int32_t> offsets = {0, 10, 10, 37, 50};
  std::vector<float> in(50 * 64), a(in.size()), b(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(0.11f * i);
  ASSERT_TRUE(cpu->Run(0, in.data(), offsets.data(), a.data()).ok());
  ASSERT_TRUE((*gpu)->Run(0, in.data(), offsets.data(), b.data()).ok());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << i;
}

TEST(CudaKernelsTest, RoutePermuteCombineAndCountsMatchCpu) {
  GRACE_REQUIRE_GPU();
  Topology topo;
  topo.nodes = 2;
  topo.gpus_per_node = 2;
  topo.slots_per_gpu = 3;
  Placement p = Placement::Empty(8, {0}, 12);
  p.physical_to_logical[0] = {0, 1, 5, 2, 3, 0, 4, 5, 1, 6, 7, 5};
  RoutingTableBuilder b(1, topo, p);
  auto table = b.Build();
  ASSERT_TRUE(table.ok());
  const int tokens = 300, k = 2, cols = 16;
  std::vector<int32_t> ids(tokens * k);
  std::vector<int64_t> token_ids(tokens);
  for (int t = 0; t < tokens; ++t) {
    token_ids[t] = 5000 + 3 * t;
    ids[t * k] = t % 8;
    ids[t * k + 1] = (t * 5 + 1) % 8;
  }
  // Replica selection.
  std::vector<SlotId> slots(ids.size()), dslots(ids.size());
  SelectReplicas(**table, 0, 2, ids.data(), token_ids.data(), tokens, k, 77, 4, slots.data());
  DeviceRoutingTable dtable;
  ASSERT_TRUE(dtable.Upload(**table, nullptr).ok());
  DeviceArray<int32_t> dids, dslot;
  DeviceArray<int64_t> dtok;
  ASSERT_TRUE(dids.Upload(ids.data(), ids.size(), nullptr).ok());
  ASSERT_TRUE(dtok.Upload(token_ids.data(), token_ids.size(), nullptr).ok());
  ASSERT_TRUE(dslot.Resize(ids.size()).ok());
  cuda::SelectReplicas(dtable.view(), 0, 2, dids.data(), dtok.data(), tokens, k, 77, 4,
                       dslot.data(), nullptr);
  ASSERT_TRUE(dslot.Download(dslots.data(), dslots.size(), nullptr).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  EXPECT_EQ(slots, dslots);

  // PermuteRows (reverse order, strided output) and UnpermuteCombine (pairs, weighted).
  std::vector<float> in(tokens * cols);
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(0.3f * i);
  std::vector<int32_t> order(tokens), offsets(tokens / 2 + 1), rows(tokens);
  std::vector<float> w(tokens);
  for (int i = 0; i < tokens; ++i) {
    order[i] = tokens - 1 - i;
    rows[i] = (i * 7) % tokens;
    w[i] = 0.25f + 0.001f * i;
  }
  for (int i = 0; i <= tokens / 2; ++i) offsets[i] = 2 * i;
  std::vector<float> permuted(tokens * (cols + 3)), combined(tokens / 2 * cols);
  PermuteRows(in.data(), cols, order.data(), tokens, cols, permuted.data(), cols + 3);
  UnpermuteCombine(in.data(), cols, offsets.data(), rows.data(), w.data(), tokens / 2, cols,
                   combined.data(), cols);
  DeviceArray<float> din, dperm, dcomb, dw;
  DeviceArray<int32_t> dorder, doff, drows;
  ASSERT_TRUE(din.Upload(in.data(), in.size(), nullptr).ok());
  ASSERT_TRUE(dorder.Upload(order.data(), order.size(), nullptr).ok());
  ASSERT_TRUE(doff.Upload(offsets.data(), offsets.size(), nullptr).ok());
  ASSERT_TRUE(drows.Upload(rows.data(), rows.size(), nullptr).ok());
  ASSERT_TRUE(dw.Upload(w.data(), w.size(), nullptr).ok());
  std::vector<float> zeros(permuted.size(), 0.0f);
  ASSERT_TRUE(dperm.Upload(zeros.data(), zeros.size(), nullptr).ok());
  ASSERT_TRUE(dcomb.Resize(combined.size()).ok());
  cuda::PermuteRows(din.data(), cols, dorder.data(), tokens, cols, dperm.data(), cols + 3, nullptr);
  cuda::UnpermuteCombine(din.data(), cols, doff.data(), drows.data(), dw.data(), tokens / 2, cols,
                         dcomb.data(), cols, nullptr);
  std::vector<float> gperm(permuted.size()), gcomb(combined.size());
  ASSERT_TRUE(dperm.Download(gperm.data(), gperm.size(), nullptr).ok());
  ASSERT_TRUE(dcomb.Download(gcomb.data(), gcomb.size(), nullptr).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  for (int r = 0; r < tokens; ++r) {
    for (int c = 0; c < cols; ++c) {
      EXPECT_EQ(gperm[r * (cols + 3) + c], permuted[r * (cols + 3) + c]);
    }
  }
  for (size_t i = 0; i < combined.size(); ++i) EXPECT_NEAR(gcomb[i], combined[i], 1e-5);

  // Load counts and sampled co-activation.
  LoadStats stats(1, 8, 3);
  stats.Count(0, ids.data(), token_ids.data(), tokens, k);
  DeviceArray<unsigned long long> dload, dco;
  std::vector<unsigned long long> zero_load(8, 0), zero_co(64, 0), load(8), co(64);
  ASSERT_TRUE(dload.Upload(zero_load.data(), 8, nullptr).ok());
  ASSERT_TRUE(dco.Upload(zero_co.data(), 64, nullptr).ok());
  cuda::CountLoads(dids.data(), dtok.data(), tokens, k, 8, 3, dload.data(), dco.data(), nullptr);
  ASSERT_TRUE(dload.Download(load.data(), 8, nullptr).ok());
  ASSERT_TRUE(dco.Download(co.data(), 64, nullptr).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  for (int e = 0; e < 8; ++e) EXPECT_EQ(static_cast<int64_t>(load[e]), stats.load()[0][e]);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(static_cast<int64_t>(co[i]), stats.coactivation()[0][i]);
}

}  // namespace
}  // namespace grace
