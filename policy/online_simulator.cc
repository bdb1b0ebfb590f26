#include "policy/online_simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>

#include "policy/eplb.h"
#include "policy/grace_policy.h"
#include "policy/locality_routing.h"
#include "policy/online_controller.h"

namespace grace {
namespace {

StatusOr<std::vector<LayerState>> PlanStates(const PlacementPolicy& policy,
                                             std::span<const LayerStats> stats,
                                             const Topology& topology, const CostParams& params) {
  GRACE_ASSIGN_OR_RETURN(PlacementPlan plan, PlanAllLayers(policy, stats, topology, params));
  std::vector<LayerState> states(stats.size());
  for (size_t l = 0; l < stats.size(); ++l) {
    states[l].row = plan.placement.physical_to_logical[l];
    states[l].routing = std::move(plan.routings[l]);
  }
  return states;
}

double LayerMs(const LayerStats& stats, const LayerState& state, const Topology& topology,
               const CostParams& params) {
  return EvaluateLayer(stats, state.routing, topology, params).layer_ms;
}

double StepMs(std::span<const LayerStats> stats, std::span<const LayerState> states,
              const Topology& topology, const CostParams& params) {
  double total = 0;
  for (size_t l = 0; l < stats.size(); ++l) total += LayerMs(stats[l], states[l], topology, params);
  return total;
}

// Layer-major flattening of one step's loads, the forecaster's input.
void FlattenLoads(std::span<const LayerStats> stats, Eigen::ArrayXd* out) {
  const int experts = stats.empty() ? 0 : stats[0].num_experts();
  out->resize(static_cast<Eigen::Index>(stats.size()) * experts);
  for (size_t l = 0; l < stats.size(); ++l) {
    for (int e = 0; e < experts; ++e) (*out)[l * experts + e] = stats[l].load[e];
  }
}

// Counts the migration from `from` to `to` against `result`, returning its time.
double ChargeMigration(std::span<const LayerState> from, std::span<const LayerState> to,
                       const Topology& topology, uint64_t expert_bytes, double fixed_ms,
                       PolicyResult* result) {
  MigrationLoad load(topology);
  for (size_t l = 0; l < from.size(); ++l) load.Add(from[l].row, to[l].row, expert_bytes);
  if (load.bytes == 0) return 0;
  const double ms = load.TransferMs() + fixed_ms;
  result->migrations += 1;
  result->experts_moved += load.copies;
  result->bytes_moved += load.bytes;
  result->migration_ms += ms;
  result->total_ms += ms;
  return ms;
}

// A change whose realised gain is being measured: the layers' previous states keep being
// evaluated on the real steps for the decision's horizon.
struct PendingGain {
  size_t record;
  std::vector<int> layers;
  std::vector<LayerState> before;
  int steps_left = 0;
  double gain_ms = 0;
};

}  // namespace

double CaptureOf(const OnlineSimulationReport& report, double total_ms) {
  const double oracle_gain = report.static_placement.total_ms - report.oracle.total_ms;
  return oracle_gain > 0 ? (report.static_placement.total_ms - total_ms) / oracle_gain : 0.0;
}

StatusOr<OnlineSimulationReport> SimulateOnline(
    WorkloadStream stream, const Topology& topology, const CostParams& params,
    const OnlineSimulationOptions& options,
    const std::function<void(const OnlineSimulationProgress&)>& progress) {
  GRACE_RETURN_IF_ERROR(topology.Validate());
  const int layers = stream.num_layers();
  const int experts = stream.num_experts();
  if (topology.total_slots() < experts) {
    return InvalidArgument("the topology has " + std::to_string(topology.total_slots()) +
                           " slots for " + std::to_string(experts) + " experts per layer");
  }
  const GracePolicy grace_planner;
  const EplbPolicy eplb_planner;
  DecisionOptions decision_options = options.decision;
  if (decision_options.expert_bytes == 0) decision_options.expert_bytes = ExpertWeightBytes(params);
  const uint64_t expert_bytes = decision_options.expert_bytes;

  OnlineSimulationReport report;
  report.static_placement.name = "static";
  report.online.name = "online";
  report.periodic_eplb.name = "periodic_eplb";
  report.oracle.name = "oracle";

  // Static and online start from grace's plan of the first phase; periodic EPLB from EPLB's.
  const std::vector<LayerStats> first_profile = stream.PhaseProfile(0);
  GRACE_ASSIGN_OR_RETURN(std::vector<LayerState> static_states,
                         PlanStates(grace_planner, first_profile, topology, params));
  std::vector<LayerState> online_states = static_states;
  GRACE_ASSIGN_OR_RETURN(std::vector<LayerState> eplb_states,
                         PlanStates(eplb_planner, first_profile, topology, params));

  // The oracle: per phase and layer, the better of grace's and EPLB's plan in hindsight.
  std::vector<std::vector<LayerState>> oracle_by_phase;
  for (int p = 0; p < stream.num_phases(); ++p) {
    const std::vector<LayerStats> profile = stream.PhaseProfile(p);
    GRACE_ASSIGN_OR_RETURN(std::vector<LayerState> g,
                           PlanStates(grace_planner, profile, topology, params));
    GRACE_ASSIGN_OR_RETURN(std::vector<LayerState> e,
                           PlanStates(eplb_planner, profile, topology, params));
    for (int l = 0; l < layers; ++l) {
      if (LayerMs(profile[l], e[l], topology, params) < LayerMs(profile[l], g[l], topology, params))
        g[l] = std::move(e[l]);
    }
    oracle_by_phase.push_back(std::move(g));
  }
  {
    PolicyResult paid;
    std::vector<LayerState> at = static_states;
    for (const std::vector<LayerState>& next : oracle_by_phase) {
      std::vector<LayerState> aligned = next;
      for (int l = 0; l < layers; ++l) {
        aligned[l].row = AlignRowToCurrent(at[l].row, next[l].row, topology);
      }
      ChargeMigration(at, aligned, topology, expert_bytes, decision_options.fixed_cost_ms, &paid);
      at = std::move(aligned);
    }
    report.oracle_move_ms = paid.migration_ms;
  }

  OnlineControllerOptions controller_options;
  controller_options.decision = decision_options;
  controller_options.forecast = options.forecast;
  controller_options.detector = options.detector;
  controller_options.warmup_intervals = options.warmup_steps;
  controller_options.coactivation_decay = options.coactivation_decay;
  controller_options.recent_token_intervals = options.recent_token_steps;
  OnlineController controller(topology, params, stream.layer_ids(), experts, stream.top_k(),
                              controller_options, &grace_planner);

  std::deque<std::vector<double>> eplb_window;  // [layer][expert] loads of recent steps
  std::vector<PendingGain> pending;
  Eigen::ArrayXd observed;
  std::vector<LayerTokens> step_tokens;
  std::vector<LayerStats> step;
  int phase = -1;
  for (int t = 0; stream.Next(&step); ++t) {
    if (stream.current_phase() != phase) {
      phase = stream.current_phase();
      report.phase_start_step.push_back(t);
    }
    const std::vector<LayerState>& oracle_states = oracle_by_phase[phase];

    // Serve the step under every strategy.
    auto serve = [&](std::span<const LayerState> states, PolicyResult* result) {
      const double ms = StepMs(step, states, topology, params);
      result->step_ms.push_back(ms);
      result->total_ms += ms;
    };
    serve(static_states, &report.static_placement);
    serve(online_states, &report.online);
    serve(eplb_states, &report.periodic_eplb);
    serve(oracle_states, &report.oracle);

    // Realised gains of earlier decisions.
    for (PendingGain& g : pending) {
      for (size_t i = 0; i < g.layers.size(); ++i) {
        const int l = g.layers[i];
        g.gain_ms += LayerMs(step[l], g.before[i], topology, params) -
                     LayerMs(step[l], online_states[l], topology, params);
      }
      if (--g.steps_left == 0) {
        DecisionRecord& r = report.decisions[g.record];
        r.realised_gain_ms = g.gain_ms;
      }
    }
    std::erase_if(pending, [](const PendingGain& g) { return g.steps_left <= 0; });

    // Observe: every step is one control interval.
    FlattenLoads(step, &observed);
    const bool has_tokens = step[0].tokens.has_value();
    if (has_tokens) {
      step_tokens.resize(layers);
      for (int l = 0; l < layers; ++l) step_tokens[l] = *step[l].tokens;
    }
    controller.Observe(std::span<const double>(observed.data(), observed.size()), {},
                       has_tokens ? &step_tokens : nullptr, t);

    // Online decision: every decide_every steps, and at once when a load shift is detected
    // (the interval that most needs one).
    if ((t + 1) % std::max(1, options.decide_every) == 0 ||
        !controller.last_shifted_layers().empty()) {
      Decision decision = controller.Decide(t, online_states);
      if (!decision.changed_layers.empty()) {
        // Each record's realised gain: its layers' old states keep being evaluated.
        for (DecisionRecord& r : decision.records) {
          PendingGain gain;
          gain.record = report.decisions.size();
          gain.steps_left = controller.horizon_steps();
          for (int l : decision.changed_layers) {
            if (r.layer_index >= 0 && r.layer_index != l) continue;
            gain.layers.push_back(l);
            gain.before.push_back(online_states[l]);
          }
          report.decisions.push_back(std::move(r));
          pending.push_back(std::move(gain));
        }
        for (size_t i = 0; i < decision.changed_layers.size(); ++i) {
          online_states[decision.changed_layers[i]] = std::move(decision.new_states[i]);
        }
        if (decision.bytes > 0) {
          report.online.migrations += 1;
          report.online.bytes_moved += decision.bytes;
          report.online.experts_moved += static_cast<int>(decision.bytes / expert_bytes);
          report.online.migration_ms += decision.migration_ms;
          report.online.total_ms += decision.migration_ms;
        }
      }
    }

    // Periodic EPLB: re-plan from the window sum every period.
    std::vector<double> flat(observed.data(), observed.data() + observed.size());
    eplb_window.push_back(std::move(flat));
    while (static_cast<int>(eplb_window.size()) > std::max(1, options.eplb_window))
      eplb_window.pop_front();
    if ((t + 1) % std::max(1, options.eplb_period) == 0) {
      std::vector<LayerStats> window(layers);
      for (int l = 0; l < layers; ++l) {
        window[l].layer_id = step[l].layer_id;
        window[l].top_k = step[l].top_k;
        window[l].load.assign(experts, 0.0);
        for (const auto& w : eplb_window) {
          for (int e = 0; e < experts; ++e) window[l].load[e] += w[l * experts + e];
        }
      }
      GRACE_ASSIGN_OR_RETURN(std::vector<LayerState> next,
                             PlanStates(eplb_planner, window, topology, params));
      for (int l = 0; l < layers; ++l) {
        next[l].row = AlignRowToCurrent(eplb_states[l].row, next[l].row, topology);
        next[l].routing = UniformRouting(next[l].row, experts, topology);
      }
      ChargeMigration(eplb_states, next, topology, expert_bytes, decision_options.fixed_cost_ms,
                      &report.periodic_eplb);
      eplb_states = std::move(next);
    }
    report.steps = t + 1;
    if (progress) {
      progress({t + 1, stream.total_steps(), phase, stream.num_phases(), report.online.total_ms,
                report.static_placement.total_ms, report.online.migrations});
    }
  }
  // Decisions whose horizon ran past the end: realised over the steps that were served.
  for (PendingGain& g : pending) report.decisions[g.record].realised_gain_ms = g.gain_ms;

  report.forecast_mape = controller.forecast_wmape();
  report.last_value_mape = controller.last_value_wmape();
  report.detector_alarms = controller.detector_alarms();
  return report;
}

}  // namespace grace
