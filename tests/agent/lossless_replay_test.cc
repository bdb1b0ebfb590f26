// Lossless replay across processes: 4 grace-agent processes (2 nodes x 2 ranks) on loopback
// replay the real Qwen1.5-MoE routing trace (3 layers, 60 experts, top-4) with a shuffled
// placement and replicas, weights from a safetensors file; every token's output must equal the
// single-process dense reference.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>

#include <gtest/gtest.h>

#include "agent/local_replay.h"
#include "core/native_trace.h"
#include "core/trace_import.h"
#include "tests/testing/real_traces.h"

namespace grace {
namespace {

// Experts shuffled over the slots, every spare slot a replica of a random expert.
Placement ShuffledPlacement(const Topology& topo, int experts, const std::vector<LayerId>& layers,
                            uint32_t seed) {
  std::mt19937 rng(seed);
  Placement p = Placement::Empty(experts, layers, topo.total_slots());
  for (auto& row : p.physical_to_logical) {
    std::vector<SlotId> slots(topo.total_slots());
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    for (int i = 0; i < topo.total_slots(); ++i) {
      row[slots[i]] = i < experts ? i : static_cast<ExpertId>(rng() % experts);
    }
  }
  return p;
}

class LosslessReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        (std::filesystem::temp_directory_path() / ("grace_lossless_" + std::to_string(::getpid())))
            .string();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(LosslessReplayTest, FourProcessesMatchDenseReferenceOnQwenTrace) {
  GRACE_REQUIRE_REAL_TRACES(traces);
  const std::string q = traces + "/qwen1.5-moe-a2.7b-gsm8k/";
  auto trace =
      ImportTraces({q + "moe_layer0.jsonl", q + "moe_layer8.jsonl", q + "moe_layer12.jsonl"});
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  ASSERT_EQ(trace->info.num_layers(), 3);
  const std::string trace_path = dir_ + "/qwen.gtrace";
  ASSERT_TRUE(WriteNativeTrace(trace_path, *trace).ok());

  for (bool shuffled : {false, true}) {
    LocalReplayOptions o;
    o.agent_binary = GRACE_AGENT_BINARY;
    o.trace_path = trace_path;
    o.work_dir = dir_ + (shuffled ? "/shuffled" : "/default");
    o.topology.nodes = 2;
    o.topology.gpus_per_node = 2;
    o.shape = {.num_experts = trace->info.num_experts,
               .top_k = trace->info.top_k,
               .hidden = 32,
               .ffn = 16,
               .num_layers = 3};
    o.topology.slots_per_gpu = (o.shape.num_experts + 3) / 4 + 3;
    if (shuffled) {
      o.placement = ShuffledPlacement(o.topology, o.shape.num_experts, trace->info.layer_ids, 5);
    }
    auto r = RunLocalReplay(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->lossless) << r->mismatch;
    EXPECT_EQ(r->tokens, trace->TotalTokens());
    EXPECT_EQ(r->tokens, 4357);
    EXPECT_LT(r->max_abs_error, 1e-5);
    // The experts did change the hidden states, so the comparison is not vacuous.
    EXPECT_GT(r->mean_abs_moe_change, 1e-3);
    EXPECT_GT(r->remote_bytes_sent, 0u);
    std::printf("%s placement: %lld tokens, %d steps, max |error| %.3g, mean |moe change| %.3g\n",
                shuffled ? "shuffled" : "default", static_cast<long long>(r->tokens), r->steps,
                r->max_abs_error, r->mean_abs_moe_change);
  }
}

}  // namespace
}  // namespace grace
