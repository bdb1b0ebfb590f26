// grace-agent's replay with backend = "cuda" in one process (RunAgent): tokens generated and
// routed by the gate on the device; every home token's output matches the dense reference at
// bf16 tolerance. One GPU: one rank over TCP; two GPUs: two local ranks over NCCL. Skipped, with
// the reason, without the GPUs each needs.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "agent/agent_config.h"
#include "agent/dense_reference.h"
#include "agent/local_cluster.h"
#include "agent/replay.h"
#include "kernels/cuda_device.h"

namespace grace {
namespace {

int CudaDevices() {
  std::string why;
  if (!CudaDeviceAvailable(&why)) return 0;
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

// One layer: a second layer's gate would read hidden states after a bf16 FFN, where a near tie
// may pick another expert than the float32 reference, which is not an error.
void ReplayMatchesDenseReference(int ranks, const std::string& transport) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("grace_cuda_replay_" + std::to_string(::getpid()) + transport))
                              .string();
  std::filesystem::create_directories(dir);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  const std::string text =
      "[cluster]\nnodes = 1\nranks_per_node = " + std::to_string(ranks) +
      "\nslots_per_rank = " + std::to_string(16 / ranks + 2) +
      "\n[agent]\nlocal_ranks = " + std::to_string(ranks) +
      "\nbackend = \"cuda\"\n[transport]\nkind = \"" + transport +
      "\"\nrendezvous = \"127.0.0.1:" + std::to_string(*port) +
      "\"\n[model]\nexperts = 16\ntop_k = 2\nhidden = 64\nffn = 32\nlayers = 1\n"
      "[replay]\nsteps = 3\ntokens_per_rank = 24\nseed = 5\n[output]\ndir = \"" +
      dir + "\"\nwrite_outputs = true\n";
  auto config = ParseAgentConfig(text, "cuda_replay_test.toml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const Status s = RunAgent(*config);
  ASSERT_TRUE(s.ok()) << s.ToString();

  const ModelShape& shape = config->model;
  const ExpertWeights weights = GenerateExpertWeights(shape, config->weights_seed);
  int tokens = 0;
  for (int r = 0; r < ranks; ++r) {
    std::ifstream in(dir + "/rank" + std::to_string(r) + ".outputs", std::ios::binary);
    int64_t token;
    std::vector<float> got(shape.hidden), want(shape.hidden), x0(shape.hidden);
    while (in.read(reinterpret_cast<char*>(&token), sizeof token)) {
      in.read(reinterpret_cast<char*>(got.data()), sizeof(float) * shape.hidden);
      GenerateHidden(5, token, shape.hidden, x0.data());
      want = x0;
      DenseForward(weights, nullptr, nullptr, 1, want.data());
      double err2 = 0, ref2 = 0;
      for (int c = 0; c < shape.hidden; ++c) {
        const double d = want[c] - x0[c];
        err2 += (got[c] - want[c]) * double(got[c] - want[c]);
        ref2 += d * d;
      }
      EXPECT_LE(std::sqrt(err2), 3e-2 * std::sqrt(ref2) + 1e-5) << "token " << token;
      ++tokens;
    }
  }
  EXPECT_EQ(tokens, 3 * ranks * 24);
  std::filesystem::remove_all(dir);
}

TEST(CudaReplayTest, OneGpuGateModeMatchesDenseReference) {
  if (CudaDevices() < 1) GTEST_SKIP() << "needs a CUDA device (none usable here)";
  ReplayMatchesDenseReference(1, "tcp");
}

TEST(CudaReplayTest, TwoGpusOverNcclMatchDenseReference) {
  const int have = CudaDevices();
  if (have < 2) GTEST_SKIP() << "needs 2 CUDA devices (NCCL takes one per rank), found " << have;
  ReplayMatchesDenseReference(2, "nccl");
}

}  // namespace
}  // namespace grace
