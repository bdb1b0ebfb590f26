#include "core/trace.h"

#include <gtest/gtest.h>

#include "core/synthetic_trace.h"

namespace grace {
namespace {

// Cutting steps again keeps every token's experts, gate weights and home rank, in order.
TEST(Trace, RechunkTokenStepsKeepsEveryTokenInOrder) {
  SyntheticTraceOptions o;
  o.experts = 16;
  o.top_k = 2;
  o.layers = 3;
  o.steps = 5;
  o.tokens_per_step = 7;
  Trace trace = SynthesizeTrace(o);
  for (TraceStep& s : trace.steps) {
    for (int t = 0; t < s.tokens.num_tokens; ++t) s.tokens.home_rank.push_back(t % 3);
  }
  // Per token (in trace order) and layer, its experts.
  auto flatten = [](const Trace& t) {
    std::vector<std::vector<ExpertId>> out;
    for (const TraceStep& s : t.steps) {
      const TokenBatch& b = s.tokens;
      for (int i = 0; i < b.num_tokens; ++i) {
        std::vector<ExpertId> row;
        for (int l = 0; l < t.info.num_layers(); ++l) {
          for (int k = 0; k < t.info.top_k; ++k) {
            row.push_back(b.expert_ids[(static_cast<size_t>(l) * b.num_tokens + i) * 2 + k]);
          }
        }
        row.push_back(b.home_rank[i]);
        out.push_back(row);
      }
    }
    return out;
  };
  const auto before = flatten(trace);
  const auto loads = trace.LayerLoads();
  ASSERT_TRUE(RechunkTokenSteps(4, &trace).ok());
  ASSERT_EQ(trace.steps.size(), 9u);  // 35 tokens: 8 steps of 4 and one of 3
  EXPECT_EQ(trace.steps.back().tokens.num_tokens, 3);
  EXPECT_EQ(flatten(trace), before);
  EXPECT_EQ(trace.LayerLoads(), loads);
  for (const TraceStep& s : trace.steps) {
    EXPECT_EQ(s.tokens.gate_weights.size(), s.tokens.expert_ids.size());
  }
  EXPECT_FALSE(RechunkTokenSteps(0, &trace).ok());
}

}  // namespace
}  // namespace grace
