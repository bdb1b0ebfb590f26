// CopyPacer: a cancelled copy stops at its next chunk, and a copy with no cap and a data path at
// its baseline never waits. (How long it sleeps is never asserted.)
#include "agent/copy_pacer.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(CopyPacerTest, ACancelledCopyStopsAtItsNextChunk) {
  std::atomic<bool> cancel{false};
  CopyPacer pacer(0, 1.25, nullptr, &cancel);
  double paused_s = 0;
  EXPECT_TRUE(pacer.BeforeChunk(0, &paused_s).ok());
  cancel.store(true);
  const Status s = pacer.BeforeChunk(4096, &paused_s);
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s.ToString();
}

TEST(CopyPacerTest, NoCapAndAStepAtItsBaselineNeverWait) {
  RankProgress progress;
  progress.baseline_step_us.store(1000);
  progress.last_step_us.store(1100);  // within 1.25 x the baseline
  CopyPacer pacer(0, 1.25, &progress, nullptr);
  double paused_s = 0;
  for (uint64_t done = 0; done < 10 * 4096; done += 4096) {
    ASSERT_TRUE(pacer.BeforeChunk(done, &paused_s).ok());
  }
  EXPECT_EQ(paused_s, 0.0);
}

}  // namespace
}  // namespace grace
