// The CUDA kernels and backend against their CPU twins; skipped (with the reason) without a GPU.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
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

// bf16 tolerance: the CUDA backend rounds rows, weights and both activations to bf16 (8-bit
// mantissa, relative step 2^-8) and accumulates in float32. A wrong transpose, slot or row
// offset gives errors of the order of the values themselves.
void ExpectBf16Close(const std::vector<float>& want, const std::vector<float>& got,
                     const std::string& what) {
  ASSERT_EQ(want.size(), got.size());
  double err2 = 0, ref2 = 0, max_ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err2 += (want[i] - got[i]) * double(want[i] - got[i]);
    ref2 += want[i] * double(want[i]);
    max_ref = std::max(max_ref, double(std::fabs(want[i])));
  }
  EXPECT_LE(std::sqrt(err2), 2e-2 * std::sqrt(ref2) + 1e-6) << what;
  int bad = 0;
  for (size_t i = 0; i < want.size() && bad < 5; ++i) {
    if (std::fabs(want[i] - got[i]) > 3e-2 * max_ref + 1e-6) {
      ADD_FAILURE() << what << ": element " << i << " want " << want[i] << " got " << got[i];
      ++bad;
    }
  }
}

TEST(CudaKernelsTest, ExpertBackendRefusesShapesCublasBf16CannotTake) {
  // Checked before any device call, so this runs without a GPU too.
  ModelShape s{.num_experts = 4, .top_k = 2, .hidden = 60, .ffn = 32, .num_layers = 1};
  auto gpu = MakeCudaExpertBackend(s, 1, 4, 0);
  ASSERT_FALSE(gpu.ok());
  EXPECT_EQ(gpu.status().code(), StatusCode::kInvalidArgument) << gpu.status().ToString();
  s.hidden = 64;
  s.ffn = 36;
  EXPECT_EQ(MakeCudaExpertBackend(s, 1, 4, 0).status().code(), StatusCode::kInvalidArgument);
}

TEST(CudaKernelsTest, ExpertBackendMatchesCpu) {
  GRACE_REQUIRE_GPU();
  ModelShape s{.num_experts = 4, .top_k = 2, .hidden = 64, .ffn = 32, .num_layers = 1};
  ExpertWeights w = GenerateExpertWeights(s, 11);
  auto gpu = MakeCudaExpertBackend(s, 1, 4, 0);
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  EXPECT_STREQ((*gpu)->name(), "cuda");
  auto cpu = MakeCpuExpertBackend(s, 1, 4);
  for (int e = 0; e < 4; ++e) {
    ASSERT_TRUE((*gpu)->LoadSlot(0, e, w.W1(0, e), w.W3(0, e), w.W2(0, e)).ok());
    ASSERT_TRUE(cpu->LoadSlot(0, e, w.W1(0, e), w.W3(0, e), w.W2(0, e)).ok());
  }
  std::vector<int32_t> offsets = {0, 10, 10, 37, 50};
  std::vector<float> in(50 * 64), a(in.size()), b(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(0.11f * i);
  ASSERT_TRUE(cpu->Run(0, in.data(), offsets.data(), a.data()).ok());
  const Status run = (*gpu)->Run(0, in.data(), offsets.data(), b.data());
  ASSERT_TRUE(run.ok()) << run.ToString();
  ExpectBf16Close(a, b, "fixed shape");
  // Bad offsets are refused, not read out of bounds.
  std::vector<int32_t> decreasing = {0, 10, 5, 37, 50};
  EXPECT_EQ((*gpu)->Run(0, in.data(), decreasing.data(), b.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*gpu)->LoadSlot(1, 0, w.W1(0, 0), w.W3(0, 0), w.W2(0, 0)).code(),
            StatusCode::kInvalidArgument);
}

// The CUDA twin of the CPU staging test (tests/kernels/slot_map_test.cc): an expert uploaded
// into a spare device slot on the copy stream is not read until its map is published, and then
// computes like the CPU backend's slot; the old slot goes back to the pool.
TEST(CudaKernelsTest, StagedSpareSlotIsReadOnlyOnceItsMapIsPublished) {
  GRACE_REQUIRE_GPU();
  ModelShape s{.num_experts = 2, .top_k = 1, .hidden = 64, .ffn = 32, .num_layers = 1};
  ExpertWeights w = GenerateExpertWeights(s, 12);
  const size_t n = 64 * 32;
  auto gpu = MakeCudaExpertBackend(s, 1, 2, 0, /*spare_slots=*/1);
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  auto before_cpu = MakeCpuExpertBackend(s, 1, 2);
  auto after_cpu = MakeCpuExpertBackend(s, 1, 2);
  for (int slot = 0; slot < 2; ++slot) {
    ASSERT_TRUE((*gpu)->LoadSlot(0, slot, w.W1(0, 0), w.W3(0, 0), w.W2(0, 0)).ok());
    ASSERT_TRUE(before_cpu->LoadSlot(0, slot, w.W1(0, 0), w.W3(0, 0), w.W2(0, 0)).ok());
    ASSERT_TRUE(after_cpu->LoadSlot(0, slot, w.W1(0, slot), w.W3(0, slot), w.W2(0, slot)).ok());
  }
  auto staged = std::make_shared<std::vector<float>>(3 * n);
  std::copy(w.W1(0, 1), w.W1(0, 1) + n, staged->begin());
  std::copy(w.W3(0, 1), w.W3(0, 1) + n, staged->begin() + n);
  std::copy(w.W2(0, 1), w.W2(0, 1) + n, staged->begin() + 2 * n);
  StatusOr<int> p = (*gpu)->StageSlot(0, staged);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(*p, 2);
  ASSERT_TRUE((*gpu)->FinishStaging().ok());
  EXPECT_FALSE((*gpu)->StageSlot(0, staged).ok());  // no spare left

  std::vector<int32_t> offsets = {0, 7, 20};
  std::vector<float> in(20 * 64), want(in.size()), got(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(0.07f * i);
  ASSERT_TRUE(before_cpu->Run(0, in.data(), offsets.data(), want.data()).ok());
  ASSERT_TRUE((*gpu)->Run(0, in.data(), offsets.data(), got.data()).ok());
  ExpectBf16Close(want, got, "before the switch");
  ASSERT_TRUE(
      (*gpu)
          ->UseSlotMap(std::make_shared<const SlotMap>(SlotMap::Identity(1, 2).With(0, 1, *p)))
          .ok());
  ASSERT_TRUE(after_cpu->Run(0, in.data(), offsets.data(), want.data()).ok());
  ASSERT_TRUE((*gpu)->Run(0, in.data(), offsets.data(), got.data()).ok());
  ExpectBf16Close(want, got, "after the switch");
  ASSERT_TRUE((*gpu)->ReleaseSlot(0, 1).ok());
  EXPECT_EQ((*gpu)->free_slots(0), 1);
  StatusOr<int> again = (*gpu)->StageSlot(0, staged);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, 1);
  ASSERT_TRUE((*gpu)->FinishStaging().ok());
}

// Random shapes and uneven rows per slot (zero-row slots, one slot holding most rows), several
// layers and Runs on one backend so its buffers grow and shrink between calls.
TEST(CudaKernelsTest, GroupedBf16FfnMatchesCpuOverRandomShapes) {
  GRACE_REQUIRE_GPU();
  std::mt19937 rng(2026);
  const int hiddens[] = {64, 128, 264}, ffns[] = {32, 96, 136};
  for (int trial = 0; trial < 6; ++trial) {
    const int slots = 1 + static_cast<int>(rng() % 9), layers = 1 + trial % 2;
    ModelShape s{.num_experts = slots,
                 .top_k = 1,
                 .hidden = hiddens[rng() % 3],
                 .ffn = ffns[rng() % 3],
                 .num_layers = layers};
    ExpertWeights w = GenerateExpertWeights(s, 100 + trial);
    auto gpu = MakeCudaExpertBackend(s, layers, slots, 0);
    ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
    auto cpu = MakeCpuExpertBackend(s, layers, slots);
    for (int l = 0; l < layers; ++l) {
      for (int e = 0; e < slots; ++e) {
        // Slots hold the experts in reverse, so a slot/expert mix-up shows.
        const int expert = slots - 1 - e;
        ASSERT_TRUE((*gpu)->LoadSlot(l, e, w.W1(l, expert), w.W3(l, expert), w.W2(l, expert)).ok());
        ASSERT_TRUE(cpu->LoadSlot(l, e, w.W1(l, expert), w.W3(l, expert), w.W2(l, expert)).ok());
      }
    }
    for (int run = 0; run < 3; ++run) {
      std::vector<int32_t> offsets(slots + 1, 0);
      for (int e = 0; e < slots; ++e) {
        const int pick = static_cast<int>(rng() % 4);
        const int n = pick == 0   ? 0
                      : pick == 1 ? 1 + static_cast<int>(rng() % 3)
                                  : static_cast<int>(rng() % 300);
        offsets[e + 1] = offsets[e] + n;
      }
      const int rows = offsets[slots];
      std::vector<float> in(static_cast<size_t>(rows) * s.hidden);
      std::uniform_real_distribution<float> u(-2.0f, 2.0f);
      for (float& v : in) v = u(rng);
      std::vector<float> a(in.size(), 0.0f), b(in.size(), 0.0f);
      const int layer = run % layers;
      ASSERT_TRUE(cpu->Run(layer, in.data(), offsets.data(), a.data()).ok());
      const Status st = (*gpu)->Run(layer, in.data(), offsets.data(), b.data());
      ASSERT_TRUE(st.ok()) << st.ToString();
      ExpectBf16Close(a, b,
                      "trial " + std::to_string(trial) + " run " + std::to_string(run) +
                          " hidden " + std::to_string(s.hidden) + " ffn " + std::to_string(s.ffn) +
                          " slots " + std::to_string(slots) + " rows " + std::to_string(rows));
    }
  }
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
