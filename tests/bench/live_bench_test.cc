// The live daemon groups what fires together: real graced and grace-agent processes on loopback
// (bench/live_bench.h) replay a trace in which experts come in fixed pairs; the agents' sampled
// co-activation must lead graced to put each pair on one GPU. Every expert carries the same
// load, so a daemon planning from loads alone has no reason to move anything.
#include "bench/live_bench.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "core/native_trace.h"

namespace grace {
namespace {

TEST(LiveBench, ExpertsThatAlwaysFireTogetherEndUpOnOneGpu) {
  const std::vector<std::pair<ExpertId, ExpertId>> pairs = {{0, 5}, {1, 6}, {2, 7}, {3, 4}};
  Trace trace;
  trace.info.format = "native";
  trace.info.kind = TraceKind::kTokens;
  trace.info.num_experts = 8;
  trace.info.top_k = 2;
  trace.info.layer_ids = {0};
  std::mt19937 rng(3);
  for (int s = 0; s < 200; ++s) {
    TraceStep step;
    step.kind = TraceKind::kTokens;
    step.tokens.num_tokens = 64;
    for (int t = 0; t < 64; ++t) {
      const auto& [a, b] = pairs[rng() % pairs.size()];
      step.tokens.expert_ids.push_back(a);
      step.tokens.expert_ids.push_back(b);
    }
    trace.steps.push_back(std::move(step));
  }
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("live_bench_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "pairs.gtrace").string();
  ASSERT_TRUE(WriteNativeTrace(path, trace).ok());

  LiveBenchOptions o;
  o.traces = {path};
  // One GPU per node: a pair split over two GPUs costs a cross-node send, which the decider
  // weighs against the copies (NVLink sends inside a node would not pay for them).
  o.topology = Topology{.nodes = 4, .gpus_per_node = 1, .slots_per_gpu = 2};
  o.seconds = 16;
  o.steps_per_second = 20;
  o.interval_s = 0.5;
  o.graced_binary = GRACED_BINARY;
  o.agent_binary = AGENT_BINARY;
  o.work_dir = (dir / "run").string();
  o.progress = false;
  StatusOr<nlohmann::json> result = RunLiveBench(o);
  ASSERT_TRUE(result.ok()) << result.status().ToString() << " (logs in " << o.work_dir << ")";
  const auto rows = (*result)["final_placement"]["physical_to_logical_map"]
                        .get<std::vector<std::vector<ExpertId>>>();
  ASSERT_EQ(rows.size(), 1u);
  std::vector<RankId> rank_of(8, -1);
  for (SlotId s = 0; s < static_cast<SlotId>(rows[0].size()); ++s) {
    if (rows[0][s] >= 0) rank_of[rows[0][s]] = s / o.topology.slots_per_gpu;
  }
  for (const auto& [a, b] : pairs) {
    EXPECT_EQ(rank_of[a], rank_of[b]) << "experts " << a << " and " << b << " on different GPUs";
  }
  EXPECT_GE((*result)["migrations"].get<int>(), 1);
  // Grouped, a token reaches one GPU: remote sends per token at most one.
  EXPECT_LE((*result)["measured"]["remote_sends_per_token"].get<double>(), 1.0);
  if (!HasFailure()) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace grace
