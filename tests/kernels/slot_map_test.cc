// The slot pool behind an expert backend (kernels/slot_map.h) and the CPU backend's staging:
// a staged slot is invisible to Run until its map is published, the publish copies nothing, and
// released slots return to the pool.
#include "kernels/slot_map.h"

#include <cmath>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/expert_backend.h"
#include "kernels/expert_weights.h"

namespace grace {
namespace {

TEST(SlotPoolTest, HandsOutSparesUntilExhaustedAndTakesThemBack) {
  SlotPool pool(2, 3, 2);
  EXPECT_EQ(pool.physical_slots(), 5);
  StatusOr<int> a = pool.Acquire(0), b = pool.Acquire(0);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, 3);
  EXPECT_EQ(*b, 4);
  EXPECT_EQ(pool.Acquire(0).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool.free_slots(1), 2);      // layers are separate pools
  ASSERT_TRUE(pool.Release(0, 1).ok());  // a slot the old map named
  EXPECT_EQ(pool.Release(0, 1).code(), StatusCode::kFailedPrecondition);  // already free
  EXPECT_EQ(pool.Release(0, 5).code(), StatusCode::kInvalidArgument);
  StatusOr<int> c = pool.Acquire(0);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, 1);
}

TEST(SlotMapTest, ValidateRefusesASlotNamedTwiceOrOutOfRange) {
  const SlotMap id = SlotMap::Identity(2, 3);
  EXPECT_EQ(id.physical(1, 2), 2);
  EXPECT_TRUE(id.Validate(2, 3, 4).ok());
  EXPECT_TRUE(id.With(1, 0, 3).Validate(2, 3, 4).ok());
  EXPECT_FALSE(id.With(1, 0, 2).Validate(2, 3, 4).ok());  // slots 0 and 2 both read 2
  EXPECT_FALSE(id.With(0, 0, 4).Validate(2, 3, 4).ok());
  EXPECT_FALSE(id.Validate(1, 3, 4).ok());
}

std::shared_ptr<const std::vector<float>> Packed(const ExpertWeights& w, int e, size_t n) {
  auto v = std::make_shared<std::vector<float>>(3 * n);
  std::copy(w.W1(0, e), w.W1(0, e) + n, v->begin());
  std::copy(w.W3(0, e), w.W3(0, e) + n, v->begin() + n);
  std::copy(w.W2(0, e), w.W2(0, e) + n, v->begin() + 2 * n);
  return v;
}

TEST(CpuExpertBackendTest, StagedSlotIsReadOnlyOnceItsMapIsPublished) {
  ModelShape s{.num_experts = 2, .top_k = 1, .hidden = 8, .ffn = 5, .num_layers = 1};
  ExpertWeights w = GenerateExpertWeights(s, 9);
  const size_t n = 5 * 8;
  auto reference = MakeCpuExpertBackend(s, 1, 2);   // slot 0: expert 0, slot 1: expert 1
  auto staging = MakeCpuExpertBackend(s, 1, 2, 1);  // both slots expert 0, one spare
  for (int e = 0; e < 2; ++e) {
    ASSERT_TRUE(reference->LoadSlot(0, e, w.W1(0, e), w.W3(0, e), w.W2(0, e)).ok());
    ASSERT_TRUE(staging->LoadSlot(0, e, w.W1(0, 0), w.W3(0, 0), w.W2(0, 0)).ok());
  }
  std::vector<int32_t> offsets = {0, 2, 4};
  std::vector<float> in(4 * 8), want(4 * 8), before(4 * 8), got(4 * 8);
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::cos(0.3f * i);
  ASSERT_TRUE(reference->Run(0, in.data(), offsets.data(), want.data()).ok());
  ASSERT_TRUE(staging->Run(0, in.data(), offsets.data(), before.data()).ok());

  // Expert 1 staged into the spare: Run still reads the published (identity) map.
  auto staged = Packed(w, 1, n);
  StatusOr<int> p = staging->StageSlot(0, staged);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(*p, 2);
  EXPECT_EQ(staged.use_count(), 2);  // adopted, not copied
  ASSERT_TRUE(staging->FinishStaging().ok());
  EXPECT_EQ(staging->free_slots(0), 0);
  EXPECT_EQ(staging->StageSlot(0, Packed(w, 1, n)).status().code(),
            StatusCode::kFailedPrecondition);  // no spare left
  ASSERT_TRUE(staging->Run(0, in.data(), offsets.data(), got.data()).ok());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_FLOAT_EQ(got[i], before[i]) << i;

  // The switch publishes the map naming it: now slot 1 computes expert 1.
  auto next = std::make_shared<const SlotMap>(SlotMap::Identity(1, 2).With(0, 1, *p));
  ASSERT_TRUE(staging->UseSlotMap(next).ok());
  ASSERT_TRUE(staging->Run(0, in.data(), offsets.data(), got.data()).ok());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_FLOAT_EQ(got[i], want[i]) << i;
  for (size_t i = 8 * 2; i < got.size(); ++i) ASSERT_NE(got[i], before[i]) << i;

  // The old physical slot goes back to the pool and can take the next migration's expert.
  ASSERT_TRUE(staging->ReleaseSlot(0, 1).ok());
  EXPECT_EQ(staging->free_slots(0), 1);
  EXPECT_FALSE(staging->ReleaseSlot(0, 1).ok());
  StatusOr<int> again = staging->StageSlot(0, Packed(w, 0, n));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 1);
  // A map naming a slot twice, or a buffer of the wrong size, is refused.
  EXPECT_FALSE(staging->UseSlotMap(std::make_shared<const SlotMap>(next->With(0, 0, *p))).ok());
  ASSERT_TRUE(staging->ReleaseSlot(0, *again).ok());
  EXPECT_FALSE(staging->StageSlot(0, std::make_shared<std::vector<float>>(7)).ok());
  EXPECT_EQ(staging->free_slots(0), 1);
}

}  // namespace
}  // namespace grace
