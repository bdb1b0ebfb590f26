#include "policy/online_controller.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "policy/grace_policy.h"
#include "policy/load_sampling.h"

namespace grace {
namespace {

constexpr int kLayers = 2;
constexpr int kExperts = 32;
constexpr int kTopK = 4;

Topology SmallTopology() {
  Topology t;
  t.nodes = 2;
  t.gpus_per_node = 2;
  t.slots_per_gpu = 10;
  t.inter_node_gbps = 25;
  return t;
}

// Zipf-like weights with the hot experts at `offset` (per layer, shifted by the layer).
std::vector<double> Weights(int offset) {
  std::vector<double> w(kLayers * kExperts);
  for (int l = 0; l < kLayers; ++l) {
    for (int i = 0; i < kExperts; ++i)
      w[l * kExperts + (i + offset + 3 * l) % kExperts] = 1.0 / (i + 1);
  }
  return w;
}

// A drifting count-only workload: the hot experts move at step 80.
std::vector<std::vector<double>> Workload(int steps) {
  std::mt19937_64 rng(11);
  std::vector<std::vector<double>> out;
  for (int t = 0; t < steps; ++t) {
    out.push_back(SampleCountStep(Weights(t < 80 ? 0 : 16), kExperts, 2048 * kTopK, 0.05, rng));
  }
  return out;
}

std::vector<LayerState> InitialStates(const Topology& t, const PlacementPolicy& planner) {
  std::vector<LayerState> states;
  const std::vector<double> w = Weights(0);
  for (int l = 0; l < kLayers; ++l) {
    LayerStats s;
    s.top_k = kTopK;
    s.load.assign(w.begin() + l * kExperts, w.begin() + (l + 1) * kExperts);
    for (double& x : s.load) x *= 1000;
    StatusOr<LayerPlan> plan = planner.PlanLayer(s, t, CostParams{});
    EXPECT_TRUE(plan.ok()) << plan.status().ToString();
    states.push_back({plan->row, plan->routing});
  }
  return states;
}

void Apply(const Decision& d, std::vector<LayerState>* states) {
  for (size_t i = 0; i < d.changed_layers.size(); ++i) {
    (*states)[d.changed_layers[i]] = d.new_states[i];
  }
}

// The controller against the same loop written out with its parts (the online simulator's loop
// before it moved into OnlineController): same decisions, same forecast error.
TEST(OnlineController, ReproducesTheHandWrittenLoop) {
  const Topology t = SmallTopology();
  const CostParams params;
  const GracePolicy planner;
  OnlineControllerOptions options;
  options.warmup_intervals = 16;
  const std::vector<std::vector<double>> workload = Workload(200);

  OnlineController controller(t, params, {3, 4}, kExperts, kTopK, options, &planner);
  std::vector<LayerState> a = InitialStates(t, planner);

  LoadForecaster forecaster(kLayers * kExperts, options.forecast);
  LoadShiftDetector detector(kLayers, kExperts, options.detector);
  ReplacementDecider decider(t, params, options.decision, &planner);
  std::vector<LayerState> b = a;
  double error = 0, load = 0;
  int moves = 0;
  // The validation loads: the mean of the latest intervals of each layer's current regime.
  std::deque<std::vector<double>> recent;
  std::vector<int> since_shift(kLayers, 0);
  for (int step = 0; step < static_cast<int>(workload.size()); ++step) {
    const std::vector<double>& y = workload[step];
    controller.Observe(y, {}, nullptr, step);

    const Eigen::Map<const Eigen::ArrayXd> observed(y.data(), static_cast<Eigen::Index>(y.size()));
    if (step > 0) {
      error += (forecaster.NextForecast() - observed).abs().sum();
      load += observed.sum();
    }
    forecaster.Update(observed);
    for (int& n : since_shift) ++n;
    for (int l : detector.Update(observed)) {
      since_shift[l] = 1;
      forecaster.ResetSeries(l * kExperts, (l + 1) * kExperts);
      decider.ObserveRegimeChange(step);
    }
    recent.push_back(y);
    if (static_cast<int>(recent.size()) > options.validation_intervals) recent.pop_front();
    if ((step + 1) % 4 != 0) continue;
    const Decision got = controller.Decide(step, a);
    if (step + 1 < options.warmup_intervals) {
      EXPECT_TRUE(got.records.empty());
      continue;
    }
    Eigen::ArrayXd horizon;
    forecaster.Forecast(decider.horizon_steps(), &horizon);
    Eigen::ArrayXd series_error;
    forecaster.SelectedError(&series_error);
    std::vector<LayerStats> forecast(kLayers);
    std::vector<double> uncertainty(kLayers, 0.0);
    for (int l = 0; l < kLayers; ++l) {
      forecast[l].layer_id = 3 + l;
      forecast[l].top_k = kTopK;
      forecast[l].load.assign(horizon.data() + l * kExperts, horizon.data() + (l + 1) * kExperts);
      const double sum = horizon.segment(l * kExperts, kExperts).sum();
      const double samples = forecaster.RegimeSamples().segment(l * kExperts, kExperts).mean();
      uncertainty[l] = series_error.segment(l * kExperts, kExperts).sum() / sum /
                       std::sqrt(std::max(1.0, samples));
    }
    std::vector<LayerStats> validation(kLayers);
    for (int l = 0; l < kLayers; ++l) {
      validation[l].layer_id = 3 + l;
      validation[l].top_k = kTopK;
      validation[l].load.assign(kExperts, 0.0);
      const int n = std::min<int>(static_cast<int>(recent.size()), since_shift[l]);
      for (int i = 0; i < n; ++i) {
        const std::vector<double>& interval = recent[recent.size() - 1 - i];
        for (int e = 0; e < kExperts; ++e) validation[l].load[e] += interval[l * kExperts + e] / n;
      }
    }
    const Decision want = decider.Decide(step, b, forecast, uncertainty, validation);
    ASSERT_EQ(got.records.size(), want.records.size()) << "step " << step;
    for (size_t i = 0; i < got.records.size(); ++i) {
      EXPECT_EQ(got.records[i].kind, want.records[i].kind);
      EXPECT_EQ(got.records[i].layer_index, want.records[i].layer_index);
      EXPECT_EQ(got.records[i].bytes, want.records[i].bytes);
    }
    ASSERT_EQ(got.changed_layers, want.changed_layers);
    for (size_t i = 0; i < got.new_states.size(); ++i) {
      EXPECT_EQ(got.new_states[i].row, want.new_states[i].row);
    }
    if (got.bytes > 0) ++moves;
    Apply(got, &a);
    Apply(want, &b);
    // What Decide used is what ForecastStats reports.
    const std::vector<LayerStats> stats = controller.ForecastStats();
    ASSERT_EQ(stats.size(), static_cast<size_t>(kLayers));
    EXPECT_EQ(stats[1].layer_id, 4);
    EXPECT_EQ(stats[1].load, forecast[1].load);
  }
  EXPECT_GT(moves, 0) << "the drift should make the controller move experts";
  EXPECT_NEAR(controller.forecast_wmape(), error / load, 1e-9);
  EXPECT_LT(controller.forecast_wmape(), controller.last_value_wmape());
  EXPECT_EQ(controller.intervals(), 200);
}

TEST(OnlineController, CoactivationPairsReachTheForecastAffinity) {
  const Topology t = SmallTopology();
  OnlineController controller(t, CostParams{}, {0, 1}, kExperts, kTopK, {}, nullptr);
  const std::vector<double> y = Workload(1)[0];
  const std::vector<CoactivationPair> pairs = {{1, 2, 5, 10.0}, {0, 7, 7, 3.0}};
  controller.Observe(y, pairs);
  const std::vector<LayerStats> stats = controller.ForecastStats();
  ASSERT_TRUE(stats[1].affinity.has_value());
  EXPECT_DOUBLE_EQ(stats[1].affinity->at(2, 5), 10.0);
  EXPECT_DOUBLE_EQ(stats[1].affinity->at(5, 2), 10.0);
  EXPECT_DOUBLE_EQ(stats[0].affinity->at(7, 7), 0.0);  // a pair with itself is not co-activation
}

// After a detected shift the forecast's token sample holds the new workload's tokens only:
// tokens from before it would fit the plan to the workload that just left.
TEST(OnlineController, ForecastTokensStartAfterAShift) {
  const Topology t = SmallTopology();
  OnlineControllerOptions options;
  options.recent_token_intervals = 4;
  OnlineController controller(t, CostParams{}, {0, 1}, kExperts, kTopK, options, nullptr);
  std::mt19937_64 rng(3);
  // 512 tokens a step, each on 4 distinct experts of a block of 8 (0-7, then 16-23).
  auto step = [&](int first, std::vector<double>* load, std::vector<LayerTokens>* tokens) {
    load->assign(kLayers * kExperts, 0.0);
    tokens->assign(kLayers, LayerTokens{});
    for (int l = 0; l < kLayers; ++l) {
      (*tokens)[l].top_k = kTopK;
      for (int i = 0; i < 512; ++i) {
        std::vector<int> block(8);
        for (int k = 0; k < 8; ++k) block[k] = first + k;
        std::shuffle(block.begin(), block.end(), rng);
        for (int k = 0; k < kTopK; ++k) {
          (*tokens)[l].expert_ids.push_back(block[k]);
          (*load)[l * kExperts + block[k]] += 1;
        }
      }
    }
  };
  std::vector<double> load;
  std::vector<LayerTokens> tokens;
  int shift_step = -1;
  for (int s = 0; s < 60 && shift_step < 0; ++s) {
    step(s < 30 ? 0 : 16, &load, &tokens);
    controller.Observe(load, {}, &tokens, s);
    if (s >= 30 && !controller.last_shifted_layers().empty()) shift_step = s;
  }
  ASSERT_GE(shift_step, 30) << "no shift detected";
  for (int s = shift_step + 1; s < shift_step + 3; ++s) {
    step(16, &load, &tokens);
    controller.Observe(load, {}, &tokens, s);
  }
  const std::vector<LayerStats> stats = controller.ForecastStats();
  for (int l = 0; l < kLayers; ++l) {
    ASSERT_TRUE(stats[l].tokens.has_value());
    const std::vector<ExpertId>& ids = stats[l].tokens->expert_ids;
    EXPECT_FALSE(ids.empty());
    EXPECT_LE(ids.size(), static_cast<size_t>(4 * 512 * kTopK));
    for (ExpertId e : ids) ASSERT_GE(e, 16) << "layer " << l << ": a token from before the shift";
  }
}

TEST(OnlineController, LivePolicyChangeTakesEffect) {
  const Topology t = SmallTopology();
  const GracePolicy planner;
  OnlineControllerOptions options;
  options.warmup_intervals = 4;
  OnlineController controller(t, CostParams{}, {0, 1}, kExperts, kTopK, options, &planner);
  std::vector<LayerState> states = InitialStates(t, planner);
  // Observe only the shifted workload: every layer wants to move.
  const std::vector<std::vector<double>> workload = Workload(120);
  for (int step = 80; step < 100; ++step) controller.Observe(workload[step]);
  DecisionOptions frozen = controller.decision_options();
  frozen.min_net_gain_ms = 1e12;  // an operator freezes the placement
  controller.SetDecisionOptions(frozen);
  EXPECT_EQ(controller.Decide(100, states).bytes, 0u);
  frozen.min_net_gain_ms = 1.0;
  controller.SetDecisionOptions(frozen);
  EXPECT_GT(controller.Decide(101, states).bytes, 0u);
}

// graced's input: loads and sampled co-activation pairs, no tokens. Experts e, e + 8, e + 16 and
// e + 24 always fire together, so a placement from loads alone splits every group; the pairs
// must make the controller regroup them onto one GPU each.
TEST(OnlineController, PairsAloneRegroupExpertsThatFireTogether) {
  Topology t = SmallTopology();
  t.slots_per_gpu = 8;  // no spare slot: where the primaries go is the whole grouping
  const GracePolicy planner;
  OnlineControllerOptions options;
  options.warmup_intervals = 4;
  // A long horizon, so that a regroup's copies pay and the test is about the signal.
  options.decision.horizon_steps = 100000;
  options.decision.adapt_horizon = false;
  OnlineController controller(t, CostParams{}, {0, 1}, kExperts, kTopK, options, &planner);
  const int groups = kExperts / kTopK;
  auto group_of = [&](ExpertId e) { return e % groups; };
  std::vector<LayerState> states;
  for (int l = 0; l < kLayers; ++l) {
    LayerStats s;
    s.top_k = kTopK;
    s.load.assign(kExperts, 0.0);
    for (ExpertId e = 0; e < kExperts; ++e) s.load[e] = 1000.0 / (1 + group_of(e));
    StatusOr<LayerPlan> plan = planner.PlanLayer(s, t, CostParams{});
    ASSERT_TRUE(plan.ok());
    states.push_back({plan->row, plan->routing});
  }
  // Groups whose experts' primary copies (first in slot order) share one GPU.
  auto grouped = [&](const std::vector<ExpertId>& row) {
    std::vector<std::vector<RankId>> ranks(groups);
    std::vector<char> seen(kExperts, 0);
    for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
      const ExpertId e = row[s];
      if (e == kEmptySlot || seen[e]) continue;
      seen[e] = 1;
      ranks[group_of(e)].push_back(t.RankOfSlot(s));
    }
    int together = 0;
    for (const auto& r : ranks)
      together += std::all_of(r.begin(), r.end(), [&](RankId x) { return x == r.front(); });
    return together;
  };
  const int before = grouped(states[0].row);
  EXPECT_LE(before, 2) << "the load-only start should split the groups";

  std::mt19937_64 rng(5);
  const int steps_per_interval = 16, tokens_per_step = 512;
  for (int interval = 0; interval < 12; ++interval) {
    std::vector<double> load(kLayers * kExperts, 0.0);
    std::vector<CoactivationPair> pairs;
    std::vector<double> group_tokens(groups, 0.0);
    std::discrete_distribution<int> pick({8, 7, 6, 5, 4, 3, 2, 1});
    for (int i = 0; i < steps_per_interval * tokens_per_step; ++i) group_tokens[pick(rng)] += 1;
    for (int l = 0; l < kLayers; ++l) {
      for (ExpertId e = 0; e < kExperts; ++e) {
        load[l * kExperts + e] = group_tokens[group_of(e)] / steps_per_interval;
        for (ExpertId b = e + 1; b < kExperts; ++b) {
          // The agents sample one token in 8.
          if (group_of(b) == group_of(e)) pairs.push_back({l, e, b, group_tokens[e % groups] / 8});
        }
      }
    }
    controller.Observe(load, pairs);
    Apply(controller.Decide(interval * steps_per_interval, states), &states);
  }
  EXPECT_GE(grouped(states[0].row), groups - 1);
  EXPECT_GE(grouped(states[1].row), groups - 1);
}

}  // namespace
}  // namespace grace
