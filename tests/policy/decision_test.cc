#include "policy/decision.h"

#include <algorithm>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "policy/eplb.h"
#include "policy/grace_policy.h"
#include "policy/locality_routing.h"

namespace grace {
namespace {

constexpr int kExperts = 32;

Topology SmallTopology(double inter_gbps = 400) {
  Topology t;
  t.nodes = 2;
  t.gpus_per_node = 2;
  t.slots_per_gpu = 10;  // 40 slots: 8 spare
  t.inter_node_gbps = inter_gbps;
  return t;
}

LayerStats Stats(std::vector<double> load) {
  LayerStats s;
  s.top_k = 4;
  s.load = std::move(load);
  return s;
}

// Zipf-like loads with the hot experts at `offset`.
std::vector<double> SkewedLoad(int offset, double total = 4096.0 * 4) {
  std::vector<double> load(kExperts);
  double sum = 0;
  for (int i = 0; i < kExperts; ++i) sum += 1.0 / (i + 1);
  for (int i = 0; i < kExperts; ++i) load[(i + offset) % kExperts] = total / (i + 1) / sum;
  return load;
}

std::vector<LayerState> PlanFor(const std::vector<LayerStats>& stats, const Topology& t) {
  const GracePolicy planner;
  std::vector<LayerState> states;
  for (const LayerStats& s : stats) {
    StatusOr<LayerPlan> plan = planner.PlanLayer(s, t, CostParams{});
    EXPECT_TRUE(plan.ok()) << plan.status().ToString();
    states.push_back({plan->row, plan->routing});
  }
  return states;
}

TEST(ReplacementDecider, LeavesAPlacementAloneWhenTheForecastMatchesIt) {
  const Topology t = SmallTopology();
  const std::vector<LayerStats> stats = {Stats(SkewedLoad(0)), Stats(SkewedLoad(5))};
  const std::vector<LayerState> states = PlanFor(stats, t);
  const GracePolicy planner;
  ReplacementDecider decider(t, CostParams{}, DecisionOptions{}, &planner);
  for (int step = 0; step < 20; ++step) {
    const Decision d = decider.Decide(step, states, stats);
    EXPECT_EQ(d.bytes, 0u) << "step " << step;
  }
}

TEST(ReplacementDecider, MovesWhenTheHotExpertsMoveAndRecordsWhy) {
  const Topology t = SmallTopology();
  const std::vector<LayerStats> before = {Stats(SkewedLoad(0))};
  const std::vector<LayerState> states = PlanFor(before, t);
  const GracePolicy planner;
  ReplacementDecider decider(t, CostParams{}, DecisionOptions{}, &planner);
  const Decision d = decider.Decide(0, states, std::vector<LayerStats>{Stats(SkewedLoad(16))});
  ASSERT_FALSE(d.records.empty());
  EXPECT_GT(d.bytes, 0u);
  for (const DecisionRecord& r : d.records) {
    EXPECT_FALSE(r.reason.empty());
    EXPECT_GT(r.predicted_gain_ms, r.migration_ms);
    EXPECT_LT(r.predicted_step_ms_after, r.predicted_step_ms_before);
  }
}

TEST(ReplacementDecider, CoolDownStopsFlappingBetweenTwoWorkloads) {
  const Topology t = SmallTopology();
  std::vector<LayerState> states = PlanFor({Stats(SkewedLoad(0))}, t);
  const GracePolicy planner;
  DecisionOptions options;
  options.cooldown_steps = 10;
  ReplacementDecider decider(t, CostParams{}, options, &planner);
  int moves = 0;
  int64_t last_move = -1000;
  // The forecast flips between two workloads every interval.
  for (int step = 0; step < 100; ++step) {
    const std::vector<LayerStats> forecast = {Stats(SkewedLoad(step % 2 == 0 ? 16 : 0))};
    Decision d = decider.Decide(step, states, forecast);
    if (d.bytes == 0) continue;
    ++moves;
    EXPECT_GE(step - last_move, options.cooldown_steps) << "moved again at step " << step;
    last_move = step;
    for (size_t i = 0; i < d.changed_layers.size(); ++i) {
      states[d.changed_layers[i]] = d.new_states[i];
    }
  }
  EXPECT_LE(moves, 100 / options.cooldown_steps + 1);
}

TEST(ReplacementDecider, StaysPutWhenMovingCostsMoreThanItGains) {
  // Experts a thousand times heavier and a short horizon: the same shift that pays with real
  // weights does not (neither a regroup nor a few moves from the current placement).
  const Topology t = SmallTopology();
  const std::vector<LayerState> states = PlanFor({Stats(SkewedLoad(0))}, t);
  const GracePolicy planner;
  DecisionOptions options;
  options.horizon_steps = 4;
  options.expert_bytes = 1000 * ExpertWeightBytes(CostParams{});
  ReplacementDecider decider(t, CostParams{}, options, &planner);
  const Decision d = decider.Decide(0, states, std::vector<LayerStats>{Stats(SkewedLoad(16))});
  EXPECT_EQ(d.bytes, 0u);
  for (const DecisionRecord& r : d.records) EXPECT_EQ(r.kind, ActionKind::kReweight);
}

TEST(ReplacementDecider, NeverExceedsItsByteBudget) {
  const Topology t = SmallTopology();
  const CostParams params;
  const uint64_t expert_bytes = ExpertWeightBytes(params);
  std::mt19937_64 rng(3);
  for (uint64_t budget_experts : {1u, 2u, 5u, 12u}) {
    std::vector<LayerStats> stats;
    for (int l = 0; l < 4; ++l) stats.push_back(Stats(SkewedLoad(l * 3)));
    std::vector<LayerState> states = PlanFor(stats, t);
    const GracePolicy planner;
    DecisionOptions options;
    options.byte_budget = budget_experts * expert_bytes;
    options.cooldown_steps = 0;
    ReplacementDecider decider(t, params, options, &planner);
    std::uniform_int_distribution<int> offset(0, kExperts - 1);
    for (int step = 0; step < 30; ++step) {
      for (LayerStats& s : stats) s.load = SkewedLoad(offset(rng));
      Decision d = decider.Decide(step, states, stats);
      EXPECT_LE(d.bytes, options.byte_budget) << "budget " << budget_experts << " step " << step;
      uint64_t recorded = 0;
      for (const DecisionRecord& r : d.records) recorded += r.bytes;
      EXPECT_EQ(recorded, d.bytes);
      // The bytes the changes really need agree with what was charged.
      MigrationLoad load(t);
      for (size_t i = 0; i < d.changed_layers.size(); ++i) {
        load.Add(states[d.changed_layers[i]].row, d.new_states[i].row, expert_bytes);
        states[d.changed_layers[i]] = d.new_states[i];
      }
      EXPECT_EQ(load.bytes, d.bytes);
    }
  }
}

TEST(ReplacementDecider, ShortBudgetServesSeveralLayersWithTheirCheaperChanges) {
  // Every layer's hot experts move at once. With room for half the largest single change, the
  // budget goes to the first moves of several layers (most gain per byte) rather than to one
  // layer's change, and gains well over what any one layer's change would.
  const Topology t = SmallTopology();
  std::vector<LayerStats> before, after;
  for (int l = 0; l < 4; ++l) {
    before.push_back(Stats(SkewedLoad(l * 3)));
    after.push_back(Stats(SkewedLoad(l * 3 + 16)));
  }
  const std::vector<LayerState> states = PlanFor(before, t);
  const GracePolicy planner;
  DecisionOptions options;
  options.byte_budget = uint64_t{1} << 60;
  ReplacementDecider unlimited(t, CostParams{}, options, &planner);
  const Decision all = unlimited.Decide(0, states, after);
  uint64_t largest = 0;
  double largest_gain = 0;
  for (const DecisionRecord& r : all.records) {
    largest = std::max(largest, r.bytes);
    largest_gain = std::max(largest_gain, r.predicted_gain_ms - r.migration_ms);
  }
  ASSERT_GE(all.changed_layers.size(), 3u);

  options.byte_budget = largest / 2;
  ReplacementDecider short_budget(t, CostParams{}, options, &planner);
  const Decision d = short_budget.Decide(0, states, after);
  EXPECT_LE(d.bytes, options.byte_budget);
  EXPECT_GE(d.changed_layers.size(), 3u);
  double net = 0;
  for (const DecisionRecord& r : d.records) net += r.predicted_gain_ms - r.migration_ms;
  EXPECT_GE(net, 1.5 * largest_gain);
}

TEST(AlignRowToCurrent, ARelabelledPlacementMovesNothing) {
  const Topology t = SmallTopology();
  const std::vector<LayerState> states = PlanFor({Stats(SkewedLoad(0))}, t);
  const std::vector<ExpertId>& row = states[0].row;
  // Swap the two nodes and the GPUs inside node 0, and shuffle slots inside a GPU.
  std::vector<ExpertId> relabelled(row.size());
  const int per_gpu = t.slots_per_gpu;
  const std::vector<int> rank_map = {3, 2, 0, 1};
  for (RankId r = 0; r < t.ranks(); ++r) {
    for (int i = 0; i < per_gpu; ++i) {
      relabelled[rank_map[r] * per_gpu + (per_gpu - 1 - i)] = row[r * per_gpu + i];
    }
  }
  MigrationLoad naive(t);
  naive.Add(row, relabelled, 1);
  EXPECT_GT(naive.bytes, 0u);
  const std::vector<ExpertId> aligned = AlignRowToCurrent(row, relabelled, t);
  EXPECT_EQ(aligned, row);
}

}  // namespace
}  // namespace grace
