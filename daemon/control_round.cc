// ControlLoop's interval round: Tick takes the interval's reports under the lock, observes,
// evaluates and decides without it, and applies the outcome under it again
// (daemon/control_loop_state.h).
#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "daemon/control_loop_state.h"

namespace grace {
namespace {

std::vector<float> ToFloats(const std::vector<LayerStats>& stats) {
  std::vector<float> out;
  for (const LayerStats& s : stats) {
    for (double v : s.load) out.push_back(static_cast<float>(v));
  }
  return out;
}

}  // namespace

void ControlLoop::Impl::Tick() {
  IntervalInput in;
  {
    std::lock_guard<std::mutex> lock(mu);
    const int64_t now = now_ms();
    AdvanceMigration(now);
    if (now < next_interval_ms) return;
    next_interval_ms = now + static_cast<int64_t>(policy.interval_s * 1000);
    if (!TakeInterval(now, &in)) return;
  }
  const auto started = std::chrono::steady_clock::now();
  IntervalOutput out = Compute(in);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  std::lock_guard<std::mutex> lock(mu);
  metrics.control_round_ms = ms;
  metrics.control_round_max_ms = std::max(metrics.control_round_max_ms, ms);
  metrics.control_round_seconds.Observe(ms / 1000);
  ApplyInterval(in, std::move(out));
}

bool ControlLoop::Impl::TakeInterval(int64_t now, IntervalInput* in) {
  uint64_t steps = 0;
  for (const auto& [agent, s] : agent_steps) steps = std::max(steps, s);
  agent_steps.clear();
  measured.CloseWindow();
  if (steps == 0) return false;  // no reports this interval
  steps_per_interval = static_cast<int>(steps);
  in->now = now;
  in->steps = steps;
  in->newest_step = newest_step;
  in->per_step.resize(counts.size());
  for (size_t i = 0; i < counts.size(); ++i)
    in->per_step[i] = counts[i] / static_cast<double>(steps);
  std::fill(counts.begin(), counts.end(), 0.0);
  in->pairs = pairs.Take();
  if (rebuild_controller) {
    MakeController();
    rebuild_controller = false;
  }
  in->policy = policy;
  in->forced = replan_requested;
  in->decide =
      !paused && migration.idle() &&
      (in->forced || now - last_migration_ms >= static_cast<int64_t>(policy.cooldown_s * 1000));
  if (in->decide) replan_requested = false;
  return true;
}

ControlLoop::Impl::IntervalOutput ControlLoop::Impl::Compute(const IntervalInput& in) {
  IntervalOutput out;
  if (controller->intervals() > 0) {
    const Eigen::ArrayXd& next = controller->forecaster().NextForecast();
    out.predicted.assign(next.data(), next.data() + next.size());
    const Eigen::ArrayXd& last = controller->forecaster().LastObserved();
    const Eigen::Map<const Eigen::ArrayXd> observed(in.per_step.data(),
                                                    static_cast<Eigen::Index>(in.per_step.size()));
    if (next.size() == observed.size() && last.size() == observed.size()) {
      out.forecast_abs_error = (next - observed).abs().sum();
      out.last_value_abs_error = (last - observed).abs().sum();
      out.load = observed.sum();
    }
  }
  // EPLB is the load-only baseline: with it the controller sees no co-activation, so none of
  // the decider's candidates group by it either.
  const bool load_only = in.policy.planner == "eplb";
  controller->Observe(in.per_step, load_only ? std::span<const CoactivationPair>() : in.pairs,
                      nullptr, static_cast<int64_t>(in.newest_step));
  out.imbalance.assign(layers(), 1.0);
  out.cross_node.assign(layers(), 0.0);
  for (int l = 0; l < layers(); ++l) {
    const LayerCost c =
        EvaluateLayer(ObservedStats(in.per_step, l), states[l].routing, topology(), params);
    out.imbalance[l] = c.imbalance;
    out.cross_node[l] = c.cross_node_sends_per_token;
  }
  out.forecast_wmape = controller->forecast_wmape();
  out.last_value_wmape = controller->last_value_wmape();
  for (Realisation& r : migration.realisations()) {
    for (size_t i = 0; i < r.layers.size(); ++i) {
      const LayerStats st = ObservedStats(in.per_step, r.layers[i]);
      const double before = EvaluateLayer(st, r.before[i].routing, topology(), params).layer_ms;
      const double after =
          EvaluateLayer(st, states[r.layers[i]].routing, topology(), params).layer_ms;
      r.gain_ms += (before - after) * static_cast<double>(in.steps);
    }
    --r.intervals_left;
  }
  if (in.decide) {
    controller->SetDecisionOptions(DecisionOptionsFor(in.policy, steps_per_interval));
    out.decision = controller->Decide(static_cast<int64_t>(in.newest_step), states);
    if (!out.decision->changed_layers.empty())
      out.forecast_load = ToFloats(controller->ForecastStats());
  }
  return out;
}

void ControlLoop::Impl::ApplyInterval(const IntervalInput& in, IntervalOutput out) {
  for (int l = 0; l < layers(); ++l) {
    std::vector<float> row(in.per_step.begin() + l * experts(),
                           in.per_step.begin() + (l + 1) * experts());
    Status s = store->RecordLoad(in.now, l, row);
    if (!s.ok()) spdlog::warn("graced: {}", s.message());
  }
  trends.push_back({in.now, epoch, out.imbalance, out.cross_node});
  if (trends.size() > kTrendWindow) trends.pop_front();
  forecasts.push_back({in.now, std::vector<float>(in.per_step.begin(), in.per_step.end()),
                       std::move(out.predicted)});
  if (forecasts.size() > kForecastWindow) forecasts.pop_front();
  metrics.layer_imbalance = std::move(out.imbalance);
  metrics.layer_cross_node_sends = std::move(out.cross_node);
  metrics.forecast_mape = out.forecast_wmape;
  metrics.last_value_mape = out.last_value_wmape;
  metrics.forecast_abs_error_total += out.forecast_abs_error;
  metrics.last_value_abs_error_total += out.last_value_abs_error;
  metrics.forecast_load_total += out.load;
  for (const Realisation& r : migration.realisations()) {
    if (r.intervals_left > 0) continue;
    for (int64_t id : r.decision_ids) {
      Status s = store->SetRealisedGain(id, r.gain_ms);
      if (!s.ok()) spdlog::warn("graced: {}", s.message());
    }
  }
  std::erase_if(migration.realisations(),
                [](const Realisation& r) { return r.intervals_left <= 0; });
  if (in.now - last_compact_ms > 60'000) {
    (void)store->Compact(in.now);
    last_compact_ms = in.now;
  }
  if (out.decision) StartMigration(in.now, in.forced, *out.decision, std::move(out.forecast_load));
}

LayerStats ControlLoop::Impl::ObservedStats(const std::vector<double>& per_step, int l) const {
  LayerStats st;
  st.layer_id = config.model.layer_ids[l];
  st.top_k = config.model.top_k;
  st.load.assign(per_step.begin() + l * experts(), per_step.begin() + (l + 1) * experts());
  return st;
}

}  // namespace grace
