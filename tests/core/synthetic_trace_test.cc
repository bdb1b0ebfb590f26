// The synthetic generator: deterministic for a seed, and each knob does what it says.
#include "core/synthetic_trace.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/trace_summary.h"

namespace grace {
namespace {

SyntheticTraceOptions Small() {
  SyntheticTraceOptions o;
  o.experts = 32;
  o.top_k = 4;
  o.layers = 2;
  o.steps = 8;
  o.tokens_per_step = 512;
  o.phases = 1;
  return o;
}

double MeanHotOverMean(const Trace& t) {
  double sum = 0;
  const TraceSummary s = SummarizeTrace(t);
  for (const LayerSummary& l : s.layers) sum += l.hottest_over_mean;
  return sum / s.layers.size();
}

// Fraction of a token's (first choice, later choice) pairs that share a cluster, at layer 0.
double WithinClusterFraction(const Trace& t, const SyntheticTraceOptions& o) {
  const std::vector<int> cluster = SyntheticClusters(o, 0);
  int64_t same = 0, pairs = 0;
  for (const TraceStep& s : t.steps) {
    for (int tok = 0; tok < s.tokens.num_tokens; ++tok) {
      const ExpertId* ids = &s.tokens.expert_ids[static_cast<size_t>(tok) * o.top_k];
      for (int k = 1; k < o.top_k; ++k, ++pairs) same += cluster[ids[0]] == cluster[ids[k]];
    }
  }
  return static_cast<double>(same) / pairs;
}

TEST(SyntheticTrace, SameSeedSameTraceOtherSeedOtherTrace) {
  const Trace a = SynthesizeTrace(Small());
  const Trace b = SynthesizeTrace(Small());
  SyntheticTraceOptions other = Small();
  other.seed = 2;
  const Trace c = SynthesizeTrace(other);
  ASSERT_EQ(a.steps.size(), 8u);
  for (size_t s = 0; s < a.steps.size(); ++s) {
    EXPECT_EQ(a.steps[s].tokens.expert_ids, b.steps[s].tokens.expert_ids);
  }
  EXPECT_NE(a.steps[0].tokens.expert_ids, c.steps[0].tokens.expert_ids);
}

TEST(SyntheticTrace, TokensPickDistinctExpertsInRangeWithWeightsSummingToOne) {
  const SyntheticTraceOptions o = Small();
  const Trace t = SynthesizeTrace(o);
  EXPECT_EQ(t.TotalTokens(), 8 * 512);
  for (const TraceStep& s : t.steps) {
    ASSERT_EQ(s.tokens.expert_ids.size(), 2u * 512 * 4);
    for (size_t i = 0; i < s.tokens.expert_ids.size(); i += 4) {
      std::set<ExpertId> distinct(s.tokens.expert_ids.begin() + i,
                                  s.tokens.expert_ids.begin() + i + 4);
      EXPECT_EQ(distinct.size(), 4u);
      EXPECT_GE(*distinct.begin(), 0);
      EXPECT_LT(*distinct.rbegin(), 32);
      float w = 0;
      for (int k = 0; k < 4; ++k) w += s.tokens.gate_weights[i + k];
      EXPECT_NEAR(w, 1.0f, 1e-5);
    }
  }
}

TEST(SyntheticTrace, SkewRaisesTheHottestOverMean) {
  SyntheticTraceOptions flat = Small(), skewed = Small(), steep = Small();
  flat.zipf_skew = 0;
  skewed.zipf_skew = 1.0;
  steep.zipf_skew = 4.0;  // steep enough that rejection sampling would stall: it must not
  const double f = MeanHotOverMean(SynthesizeTrace(flat));
  const double s = MeanHotOverMean(SynthesizeTrace(skewed));
  EXPECT_LT(f, 1.3);
  EXPECT_GT(s, f + 0.5);
  EXPECT_GT(MeanHotOverMean(SynthesizeTrace(steep)), s);
}

TEST(SyntheticTrace, ClustersRaiseWithinClusterCoactivation) {
  SyntheticTraceOptions none = Small(), strong = Small();
  none.cluster_strength = 0;
  strong.cluster_strength = 0.9;
  const double base = WithinClusterFraction(SynthesizeTrace(none), none);
  const double clustered = WithinClusterFraction(SynthesizeTrace(strong), strong);
  EXPECT_LT(base, 0.3);  // about 1 / clusters by chance
  EXPECT_GT(clustered, base + 0.4);
}

TEST(SyntheticTrace, PhasesMoveTheHotSet) {
  SyntheticTraceOptions o = Small();
  o.phases = 2;
  o.steps = 8;
  o.zipf_skew = 1.2;
  const Trace t = SynthesizeTrace(o);
  auto hottest = [&](size_t from, size_t to) {
    Trace part;
    part.info = t.info;
    part.steps.assign(t.steps.begin() + from, t.steps.begin() + to);
    const std::vector<double> load = part.LayerLoads()[0];
    std::vector<int> order(load.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return load[a] > load[b]; });
    return std::set<int>(order.begin(), order.begin() + 4);
  };
  const std::set<int> first = hottest(0, 4), second = hottest(4, 8);
  std::vector<int> common;
  std::set_intersection(first.begin(), first.end(), second.begin(), second.end(),
                        std::back_inserter(common));
  EXPECT_LE(common.size(), 1u) << "the top-4 experts barely moved between phases";
  // Within one phase the hot set is stable.
  EXPECT_GE(hottest(0, 2).size(), 4u);
}

TEST(SyntheticTrace, BadOptionsAreNamed) {
  SyntheticTraceOptions o = Small();
  o.top_k = 40;
  EXPECT_NE(CheckSyntheticTraceOptions(o).find("top_k"), std::string::npos);
  EXPECT_EQ(CheckSyntheticTraceOptions(Small()), "");
}

}  // namespace
}  // namespace grace
