// Live migration end to end with backend = "cuda" on one GPU: 4 grace-agent processes of one
// rank each, every one on device 0, with the test daemon (bench/migration_daemon.h) re-placing
// experts while the replay runs. Each migration copies over the TCP migration mesh into spare
// device slots (StageSlot) and switches by publishing the slot map. Every token's output must
// match the dense reference at bf16 tolerance, no step may mix epochs across ranks, every
// migration must switch, and the bytes staged must be PlanMigration's minimum. Skipped, with the
// reason, without a usable GPU.
#include <cstdlib>

#include <gtest/gtest.h>

#include "bench/migration_bench.h"
#include "kernels/cuda_device.h"
#include "tests/testing/migration_expectations.h"

namespace grace {
namespace {

TEST(CudaLiveMigrationTest, OnOneGpuMigrationsSwitchAndOutputsStayWithinBf16) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) GTEST_SKIP() << "no usable CUDA device: " << why;
  int mode = cudaComputeModeDefault;
  ASSERT_EQ(cudaDeviceGetAttribute(&mode, cudaDevAttrComputeMode, 0), cudaSuccess);
  if (mode != cudaComputeModeDefault) {
    GTEST_SKIP() << "device 0 is not in the default compute mode (" << mode
                 << "): 4 processes cannot share it";
  }
  MigrationBenchOptions o;
  // scripts/gpu-check.sh --bundle points GRACE_AGENT_BINARY at the bundle's grace-agent.
  const char* agent = std::getenv("GRACE_AGENT_BINARY");
  o.agent_binary = agent != nullptr && *agent != '\0' ? agent : GRACE_AGENT_BINARY;
  o.backend = "cuda";
  o.ranks_per_agent = 1;  // local rank 0 of each process: device 0
  o.layers = 1;  // a second layer's gate would read bf16 outputs, where a near tie is no error
  o.hidden = 64;
  o.ffn = 128;
  o.tokens_per_rank = 16;
  // 1.5 s from each PREPARE to the next: room for 4 processes sharing one GPU, whose first
  // steps also load cuBLAS's kernels.
  o.steps = 120;
  o.every_steps = 30;
  o.steps_per_second = 20;
  o.max_bytes_per_s = 4e7;
  o.baseline = false;
  o.faults = false;
  o.sigkill = false;
  o.timeout = std::chrono::milliseconds(90000);
  auto result = RunMigrationBench(o);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const nlohmann::json& j = *result;
  SCOPED_TRACE(j.dump(2));

  testing::ExpectMigrationsSwitchedAndExact(j);
}

}  // namespace
}  // namespace grace
