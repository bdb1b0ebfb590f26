// CPU kernels: gate, replica selection, dispatch layout and the expert backend against
// straightforward references.
#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/bf16.h"
#include "kernels/dispatch_layout.h"
#include "kernels/expert_backend.h"
#include "kernels/expert_weights.h"
#include "kernels/gate.h"
#include "kernels/load_stats.h"
#include "kernels/permute.h"
#include "kernels/select_replicas.h"
#include "kernels/unpermute_combine.h"

namespace grace {
namespace {

TEST(GateTopKTest, PicksLargestSoftmaxProbabilities) {
  // hidden = identity rows, so logits are the gate weight's columns.
  const int tokens = 2, h = 3, e = 3, k = 2;
  std::vector<float> x = {1, 0, 0, 0, 0, 1};
  std::vector<float> g = {0.1f, 0, 5, 2.0f, 0, 1, 1.0f, 0, 3};  // [e x h]
  std::vector<int32_t> ids(tokens * k);
  std::vector<float> w(tokens * k);
  GateTopK(x.data(), g.data(), tokens, h, e, k, ids.data(), w.data());
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 2);
  const float z = std::exp(0.1f) + std::exp(2.0f) + std::exp(1.0f);
  EXPECT_NEAR(w[0], std::exp(2.0f) / z, 1e-6);
  EXPECT_EQ(ids[2], 0);
  EXPECT_EQ(ids[3], 2);
}

Topology Topo() {
  Topology t;
  t.nodes = 2;
  t.gpus_per_node = 2;
  t.slots_per_gpu = 3;
  return t;
}

// 8 experts contiguous (2 per rank) plus one replica per rank in the third slot.
Placement Place() {
  Placement p = Placement::Empty(8, {0}, 12);
  p.physical_to_logical[0] = {0, 1, 5, 2, 3, 0, 4, 5, 1, 6, 7, 5};
  return p;
}

TEST(SelectReplicasTest, PrefersLocalAndIsDeterministic) {
  RoutingTableBuilder b(1, Topo(), Place());
  auto table = b.Build();
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  std::vector<int32_t> ids;
  std::vector<int64_t> tokens;
  for (int t = 0; t < 200; ++t) {
    tokens.push_back(1000 + t);
    ids.push_back(t % 8);
  }
  std::vector<SlotId> a(ids.size()), c(ids.size());
  SelectReplicas(**table, 0, /*rank=*/1, ids.data(), tokens.data(), 200, 1, 42, 3, a.data());
  SelectReplicas(**table, 0, 1, ids.data(), tokens.data(), 200, 1, 42, 3, c.data());
  EXPECT_EQ(a, c);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(Place().physical_to_logical[0][a[i]], ids[i]);
  }
  // From rank 1: expert 0 has a local copy (slot 5); expert 5's only same-node copy is slot 2
  // (rank 0); expert 6 lives only on rank 3 (node 1), slot 9.
  for (size_t i = 0; i < a.size(); ++i) {
    if (ids[i] == 0) {
      EXPECT_EQ(a[i], 5);
    }
    if (ids[i] == 5) {
      EXPECT_EQ(a[i], 2);
    }
    if (ids[i] == 6) {
      EXPECT_EQ(a[i], 9);
    }
  }
}

TEST(SelectReplicasTest, FollowsWeights) {
  RoutingTableBuilder b(1, Topo(), Place());
  // From rank 2 (node 1), expert 0 is remote only: slots 0 and 5 (node 0), weighted 3:1.
  ASSERT_EQ(b.BestTierSlots(0, 2, 0), (std::vector<SlotId>{0, 5}));
  std::vector<double> w = {3, 1};
  b.SetWeights(0, 2, 0, w);
  auto table = b.Build();
  ASSERT_TRUE(table.ok());
  const int n = 20000;
  std::vector<int32_t> ids(n, 0);
  std::vector<int64_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = i;
  std::vector<SlotId> slots(n);
  SelectReplicas(**table, 0, 2, ids.data(), tokens.data(), n, 1, 9, 0, slots.data());
  int first = 0;
  for (SlotId s : slots) first += s == 0;
  EXPECT_NEAR(first / static_cast<double>(n), 0.75, 0.02);
}

TEST(DispatchLayoutTest, OneRecordPerDestinationRank) {
  // 2 tokens, top-3, 2 ranks x 4 slots.
  std::vector<SlotId> slots = {0, 2, 5, 6, 7, 1};
  std::vector<float> w = {0.5f, 0.3f, 0.2f, 0.6f, 0.3f, 0.1f};
  const int k = 3, h = 2;
  DispatchLayout layout;
  std::vector<float> send;
  layout.BuildSend(slots.data(), w.data(), 2, k, h, 4, 2, &send);
  EXPECT_EQ(layout.send_records(), 4);  // token 0 -> ranks 0, 1; token 1 -> ranks 1, 0
  EXPECT_EQ(layout.records_per_rank()[0], 2);
  EXPECT_EQ(layout.records_per_rank()[1], 2);
  // Payload and receive: treat the send buffer as if all records came back to one rank with
  // 4 local slots (slot ids are local).
  std::vector<float> x = {1, 2, 3, 4};
  const int stride = RecordWords(k, h);
  PermuteRows(x.data(), h, layout.record_token().data(), 4, h, send.data() + RecordHeaderWords(k),
              stride);
  layout.BuildReceive(send.data(), 4, k, h, 4);
  EXPECT_EQ(layout.receive_rows(), 6);  // every (token, expert) once
  std::vector<float> rows(6 * h);
  PermuteRows(send.data() + RecordHeaderWords(k), stride, layout.row_record().data(), 6, h,
              rows.data(), h);
  // Identity "experts": the weighted sums give back sum_k w_k x per token.
  std::vector<float> partial(4 * h);
  UnpermuteCombine(rows.data(), h, layout.record_row_offsets().data(), layout.record_rows().data(),
                   layout.record_row_weights().data(), 4, h, partial.data(), h);
  std::vector<float> out(2 * h);
  UnpermuteCombine(partial.data(), h, layout.token_record_offsets().data(),
                   layout.token_records().data(), nullptr, 2, h, out.data(), h);
  EXPECT_NEAR(out[0], 1.0f, 1e-6);
  EXPECT_NEAR(out[1], 2.0f, 1e-6);
  EXPECT_NEAR(out[2], 3.0f, 1e-6);
  EXPECT_NEAR(out[3], 4.0f, 1e-6);
}

TEST(CpuExpertBackendTest, MatchesPerRowReference) {
  ModelShape s{.num_experts = 3, .top_k = 1, .hidden = 8, .ffn = 5, .num_layers = 1};
  ExpertWeights w = GenerateExpertWeights(s, 5);
  auto backend = MakeCpuExpertBackend(s, 1, 3);
  for (int e = 0; e < 3; ++e)
    ASSERT_TRUE(backend->LoadSlot(0, e, w.W1(0, e), w.W3(0, e), w.W2(0, e)).ok());
  std::vector<int32_t> offsets = {0, 2, 2, 5};  // slot 1 empty
  std::vector<float> in(5 * 8), out(5 * 8);
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(0.7f * i);
  ASSERT_TRUE(backend->Run(0, in.data(), offsets.data(), out.data()).ok());
  for (int r = 0; r < 5; ++r) {
    const int e = r < 2 ? 0 : 2;
    std::vector<float> a(5);
    for (int f = 0; f < 5; ++f) {
      float g = 0, u = 0;
      for (int c = 0; c < 8; ++c) {
        g += w.W1(0, e)[f * 8 + c] * in[r * 8 + c];
        u += w.W3(0, e)[f * 8 + c] * in[r * 8 + c];
      }
      a[f] = g / (1 + std::exp(-g)) * u;
    }
    for (int c = 0; c < 8; ++c) {
      float y = 0;
      for (int f = 0; f < 5; ++f) y += w.W2(0, e)[c * 5 + f] * a[f];
      EXPECT_NEAR(out[r * 8 + c], y, 1e-5) << "row " << r << " col " << c;
    }
  }
}

TEST(Bf16Test, RoundsToNearestEvenAndKeepsSpecials) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(FloatToBf16(1.0f + 0x1p-8f), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to even.
  EXPECT_EQ(FloatToBf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  // Just above halfway rounds up.
  EXPECT_EQ(FloatToBf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds past the largest
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the low 16 bits must not become infinity.
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::bit_cast<float>(0x7f800001u)))));
  std::vector<float> in = {0.1f, -3.14159f, 1e-30f, 65504.0f}, back(in.size());
  std::vector<uint16_t> bits(in.size());
  FloatsToBf16(in.data(), in.size(), bits.data());
  Bf16ToFloats(bits.data(), bits.size(), back.data());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_NEAR(back[i], in[i], std::fabs(in[i]) * 0x1p-8f) << i;
  }
}

TEST(LoadStatsTest, CountsLoadsAndSampledPairs) {
  LoadStats stats(1, 4, 2);
  std::vector<int32_t> ids = {0, 1, 2, 3, 0, 3};
  std::vector<int64_t> tokens = {10, 11, 12};
  stats.Count(0, ids.data(), tokens.data(), 3, 2);
  EXPECT_EQ(stats.load()[0], (std::vector<int64_t>{2, 1, 1, 2}));
  EXPECT_EQ(stats.coactivation()[0][0 * 4 + 1], 1);  // token 10 sampled
  EXPECT_EQ(stats.coactivation()[0][2 * 4 + 3], 0);  // token 11 not sampled
  EXPECT_EQ(stats.coactivation()[0][3 * 4 + 0], 1);  // token 12 sampled, symmetric
}

}  // namespace
}  // namespace grace
