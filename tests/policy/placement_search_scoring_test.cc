// The placement searches score candidates from SendCounters without applying them; each score
// must equal, exactly, the objective of a search reset to the changed placement.
#include <gtest/gtest.h>

#include <random>

#include "core/synthetic_trace.h"
#include "policy/slot_placement_search.h"
#include "policy/token_placement_search.h"

namespace grace {
namespace {

LayerStats SyntheticLayer(int experts, int top_k, uint64_t seed) {
  SyntheticTraceOptions o;
  o.experts = experts;
  o.top_k = top_k;
  o.layers = 1;
  o.steps = 3;
  o.tokens_per_step = 200;
  o.seed = seed;
  StatusOr<std::vector<LayerStats>> stats = LayerStatsFromTrace(SynthesizeTrace(o));
  EXPECT_TRUE(stats.ok());
  return (*stats)[0];
}

PlacementObjective SomeObjective() {
  PlacementObjective objective;
  objective.remote_send_weight = 0.15;
  objective.reference_ms = 1.0;
  return objective;
}

TEST(TokenPlacementSearchScoring, MovesAndSwapsScoreAsIfApplied) {
  for (const Topology& topo : {Topology{2, 4, 8}, Topology{3, 2, 8}, Topology{1, 4, 12}}) {
    const LayerStats stats = SyntheticLayer(32, 4, 7);
    const int experts = stats.num_experts();
    const CostParams params;
    const PlacementObjective objective = SomeObjective();
    TokenPlacementSearch search(*stats.tokens, experts, topo, params, objective);
    TokenPlacementSearch fresh(*stats.tokens, experts, topo, params, objective);
    std::mt19937 rng(11);
    std::vector<RankId> rank_of(experts);
    for (ExpertId e = 0; e < experts; ++e) rank_of[e] = static_cast<RankId>(rng() % topo.ranks());
    search.Reset(rank_of);
    for (int round = 0; round < 40; ++round) {
      const ExpertId v = static_cast<ExpertId>(rng() % experts);
      const ExpertId u = static_cast<ExpertId>(rng() % experts);
      const RankId b = static_cast<RankId>(rng() % topo.ranks());
      std::vector<RankId> moved = search.rank_of_expert();
      if (b != moved[v]) {
        moved[v] = b;
        fresh.Reset(moved);
        EXPECT_EQ(search.ScoreMove(v, b), fresh.Objective()) << topo.ToString() << " move " << v;
      }
      std::vector<RankId> swapped = search.rank_of_expert();
      if (swapped[u] != swapped[v]) {
        std::swap(swapped[u], swapped[v]);
        fresh.Reset(swapped);
        EXPECT_EQ(search.ScoreSwap(v, u), fresh.Objective())
            << topo.ToString() << " swap " << v << " " << u;
        // Applied, so the next scores start from a placement the counters followed.
        search.Swap(v, u);
        EXPECT_EQ(search.Objective(), fresh.Objective());
      }
    }
  }
}

// Tokens naming one expert twice leave the counters out (they assume each expert once per
// token); the searches then apply candidates, and the scores still match.
TEST(TokenPlacementSearchScoring, TokensNamingAnExpertTwiceScoreAsIfApplied) {
  LayerStats stats = SyntheticLayer(16, 2, 9);
  LayerTokens& tokens = *stats.tokens;
  for (int t = 0; t < tokens.num_tokens(); t += 7)
    tokens.expert_ids[2 * t + 1] = tokens.expert_ids[2 * t];
  const Topology topo{2, 2, 6};
  const CostParams params;
  const PlacementObjective objective = SomeObjective();
  TokenPlacementSearch search(tokens, 16, topo, params, objective);
  TokenPlacementSearch fresh(tokens, 16, topo, params, objective);
  std::vector<RankId> rank_of(16);
  for (ExpertId e = 0; e < 16; ++e) rank_of[e] = e % topo.ranks();
  search.Reset(rank_of);
  for (ExpertId v = 0; v < 16; ++v) {
    std::vector<RankId> moved = rank_of;
    moved[v] = (rank_of[v] + 1) % topo.ranks();
    fresh.Reset(moved);
    EXPECT_EQ(search.ScoreMove(v, moved[v]), fresh.Objective()) << v;
    const ExpertId u = (v + 3) % 16;
    std::vector<RankId> swapped = rank_of;
    std::swap(swapped[u], swapped[v]);
    fresh.Reset(swapped);
    EXPECT_EQ(search.ScoreSwap(v, u), fresh.Objective()) << v << " " << u;
  }
  // Scoring left the placement as it was.
  EXPECT_EQ(search.rank_of_expert(), rank_of);
}

// Rows with replicas of every kind the slot search meets: one copy per node (routed by home
// alone), two copies on one node and none on another (routed token by token), and free slots.
std::vector<ExpertId> RandomRow(const Topology& topo, int experts, std::mt19937& rng) {
  std::vector<ExpertId> row(topo.total_slots(), kEmptySlot);
  std::vector<SlotId> slots(row.size());
  for (SlotId s = 0; s < static_cast<SlotId>(slots.size()); ++s) slots[s] = s;
  std::shuffle(slots.begin(), slots.end(), rng);
  for (ExpertId e = 0; e < experts; ++e) row[slots[e]] = e;
  auto holds = [&](RankId g, ExpertId e) {
    for (SlotId s = g * topo.slots_per_gpu; s < (g + 1) * topo.slots_per_gpu; ++s) {
      if (row[s] == e) return true;
    }
    return false;
  };
  // Some replicas, leaving a few slots free.
  for (size_t i = experts; i + 3 < slots.size(); ++i) {
    const ExpertId e = static_cast<ExpertId>(rng() % experts);
    if (!holds(topo.RankOfSlot(slots[i]), e)) row[slots[i]] = e;
  }
  return row;
}

bool Holds(const std::vector<ExpertId>& row, const Topology& topo, RankId g, ExpertId e) {
  for (SlotId s = g * topo.slots_per_gpu; s < (g + 1) * topo.slots_per_gpu; ++s) {
    if (row[s] == e) return true;
  }
  return false;
}

TEST(SlotPlacementSearchScoring, SwapsAndRetargetsScoreAsIfApplied) {
  for (const Topology& topo : {Topology{2, 4, 5}, Topology{3, 2, 6}, Topology{2, 2, 9}}) {
    const LayerStats stats = SyntheticLayer(32, 4, 5);
    const int experts = stats.num_experts();
    const CostParams params;
    const PlacementObjective objective = SomeObjective();
    SlotPlacementSearch search(*stats.tokens, experts, topo, params, objective);
    SlotPlacementSearch fresh(*stats.tokens, experts, topo, params, objective);
    std::mt19937 rng(3);
    std::vector<ExpertId> row = RandomRow(topo, experts, rng);
    search.Reset(row);
    const int slots = topo.total_slots();
    int swaps = 0, retargets = 0;
    for (int round = 0; round < 400; ++round) {
      const SlotId a = static_cast<SlotId>(rng() % slots), b = static_cast<SlotId>(rng() % slots);
      const RankId ga = topo.RankOfSlot(a), gb = topo.RankOfSlot(b);
      const ExpertId ea = row[a], eb = row[b];
      if (ga != gb && ea != eb && (ea == kEmptySlot || !Holds(row, topo, gb, ea)) &&
          (eb == kEmptySlot || !Holds(row, topo, ga, eb))) {
        std::vector<ExpertId> changed = row;
        std::swap(changed[a], changed[b]);
        fresh.Reset(changed);
        EXPECT_EQ(search.ScoreSwap(a, b), fresh.Objective())
            << topo.ToString() << " swap " << a << " " << b;
        ++swaps;
      }
      // Re-target a replica or a free slot; every expert keeps a copy.
      const ExpertId x = static_cast<ExpertId>(rng() % experts);
      const int copies_of_ea =
          ea == kEmptySlot ? 0 : static_cast<int>(std::count(row.begin(), row.end(), ea));
      if (x != ea && !Holds(row, topo, ga, x) && (ea == kEmptySlot || copies_of_ea >= 2)) {
        std::vector<ExpertId> changed = row;
        changed[a] = x;
        fresh.Reset(changed);
        EXPECT_EQ(search.ScoreRetarget(a, x), fresh.Objective())
            << topo.ToString() << " retarget " << a << " to " << x;
        ++retargets;
        if (round % 3 == 0) {  // applied now and then, so the counters follow changes
          search.Place(a, x);
          row = changed;
          EXPECT_EQ(search.Objective(), fresh.Objective());
        }
      }
    }
    EXPECT_GT(swaps, 50);
    EXPECT_GT(retargets, 20);
  }
}

}  // namespace
}  // namespace grace
