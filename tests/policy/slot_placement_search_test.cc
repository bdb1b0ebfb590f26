#include "policy/slot_placement_search.h"

#include <gtest/gtest.h>

#include "core/synthetic_trace.h"
#include "policy/locality_routing.h"

namespace grace {
namespace {

LayerStats SyntheticLayer() {
  SyntheticTraceOptions o;
  o.experts = 32;
  o.top_k = 4;
  o.layers = 1;
  o.steps = 4;
  o.tokens_per_step = 256;
  o.seed = 3;
  StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(SynthesizeTrace(o));
  EXPECT_TRUE(stats.ok());
  return (*stats)[0];
}

// Experts round-robin over the GPUs, then one replica of expert e on the other node for the
// first spare slots: at most one copy per node, so the search's routing is the locality rule.
std::vector<ExpertId> RowWithReplicas(const Topology& topo, int experts) {
  std::vector<ExpertId> row(topo.total_slots(), kEmptySlot);
  std::vector<int> used(topo.ranks(), 0);
  for (ExpertId e = 0; e < experts; ++e) {
    const RankId g = e % topo.ranks();
    row[g * topo.slots_per_gpu + used[g]++] = e;
  }
  for (ExpertId e = 0; e < 2; ++e) {
    const RankId g = (e % topo.ranks() + topo.gpus_per_node) % topo.ranks();
    row[g * topo.slots_per_gpu + used[g]++] = e;
  }
  return row;
}

TEST(SlotPlacementSearch, MatchesTheCostModelWithOneCopyPerNode) {
  const Topology topo{2, 2, 9};
  const LayerStats stats = SyntheticLayer();
  const std::vector<ExpertId> row = RowWithReplicas(topo, stats.num_experts());
  const CostParams params;
  SlotPlacementSearch search(*stats.tokens, stats.num_experts(), topo, params, {});
  search.Reset(row);
  const LayerTraffic exact =
      TrafficOnTokens(*stats.tokens, LocalityRouting(row, stats.load, topo), topo);
  EXPECT_NEAR(search.traffic().remote_sends, exact.remote_sends, 1e-6);
  EXPECT_NEAR(search.traffic().cross_node_sends, exact.cross_node_sends, 1e-6);
  for (RankId g = 0; g < topo.ranks(); ++g) {
    EXPECT_NEAR(search.traffic().rank_load[g], exact.rank_load[g], 1e-6) << g;
  }
}

TEST(SlotPlacementSearch, LowersTheObjectiveAndKeepsEveryExpert) {
  const Topology topo{2, 2, 9};
  const LayerStats stats = SyntheticLayer();
  const std::vector<ExpertId> row = RowWithReplicas(topo, stats.num_experts());
  const CostParams params;
  SlotPlacementSearch search(*stats.tokens, stats.num_experts(), topo, params, {});
  search.Reset(row);
  const double before = search.Objective();
  const double after = search.Search(10);
  EXPECT_LT(after, before);
  const std::vector<ExpertId> out = search.Row();
  std::vector<int> copies(stats.num_experts(), 0);
  for (RankId g = 0; g < topo.ranks(); ++g) {
    std::vector<char> seen(stats.num_experts(), 0);
    for (SlotId s = g * topo.slots_per_gpu; s < (g + 1) * topo.slots_per_gpu; ++s) {
      if (out[s] == kEmptySlot) continue;
      EXPECT_FALSE(seen[out[s]]) << "expert " << out[s] << " twice on GPU " << g;
      seen[out[s]] = 1;
      ++copies[out[s]];
    }
  }
  for (ExpertId e = 0; e < stats.num_experts(); ++e) EXPECT_GE(copies[e], 1) << e;
  // Searching again from its own result finds nothing better.
  search.Reset(out);
  EXPECT_NEAR(search.Objective(), after, 1e-9 * after);
}

}  // namespace
}  // namespace grace
