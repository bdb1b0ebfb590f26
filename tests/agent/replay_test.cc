// The replay driver in one process: 4 CPU ranks as worker threads (local_ranks = 4) over TCP
// loopback, tokens generated and routed by the gate; outputs match the dense reference.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "agent/agent_config.h"
#include "agent/dense_reference.h"
#include "agent/local_cluster.h"
#include "agent/replay.h"

namespace grace {
namespace {

TEST(ReplayTest, GateModeWithFourLocalRanksMatchesDenseReference) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("grace_replay_" + std::to_string(::getpid())))
          .string();
  std::filesystem::create_directories(dir);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  const std::string text =
      "[cluster]\nnodes = 2\nranks_per_node = 2\nslots_per_rank = 4\n"
      "[agent]\nlocal_ranks = 4\n"
      "[transport]\nrendezvous = \"127.0.0.1:" +
      std::to_string(*port) +
      "\"\n[model]\nexperts = 12\ntop_k = 3\nhidden = 24\nffn = 16\n"
      "layers = 2\n[replay]\nsteps = 3\ntokens_per_rank = 20\nseed = 5\n"
      "[output]\ndir = \"" +
      dir + "\"\nwrite_outputs = true\n";
  auto config = ParseAgentConfig(text, "replay_test.toml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Status s = RunAgent(*config);
  ASSERT_TRUE(s.ok()) << s.ToString();

  const ModelShape& shape = config->model;
  const ExpertWeights weights = GenerateExpertWeights(shape, config->weights_seed);
  int tokens = 0;
  for (int r = 0; r < 4; ++r) {
    std::ifstream in(dir + "/rank" + std::to_string(r) + ".outputs", std::ios::binary);
    int64_t token;
    std::vector<float> got(shape.hidden), want(shape.hidden);
    while (in.read(reinterpret_cast<char*>(&token), sizeof token)) {
      in.read(reinterpret_cast<char*>(got.data()), sizeof(float) * shape.hidden);
      GenerateHidden(5, token, shape.hidden, want.data());
      DenseForward(weights, nullptr, nullptr, 1, want.data());
      for (int c = 0; c < shape.hidden; ++c) {
        ASSERT_NEAR(got[c], want[c], 1e-4 * (1 + std::fabs(want[c]))) << "token " << token;
      }
      ++tokens;
    }
  }
  EXPECT_EQ(tokens, 3 * 4 * 20);
  std::filesystem::remove_all(dir);
}

TEST(ReplayTest, MissingWeightsFileIsNamed) {
  AgentConfig c;
  c.topology.slots_per_gpu = 4;
  c.model = {.num_experts = 4, .top_k = 2, .hidden = 8, .ffn = 4, .num_layers = 1};
  c.weights_file = "/nonexistent/experts.safetensors";
  auto m = LoadAgentModel(c);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("/nonexistent/experts.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace grace
