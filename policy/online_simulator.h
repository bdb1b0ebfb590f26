// SimulateOnline: serves a drifting workload step by step under four placement strategies and
// reports the modeled MoE time of each, migrations included:
//   static         grace's placement planned on the first phase, never changed (the paper's
//                  offline mode);
//   online         grace online: forecasts every (layer, expert) load (policy/forecast.h),
//                  resets on load shifts (policy/change_detector.h) and lets ReplacementDecider
//                  (policy/decision.h) change the placement when the forecast gain pays for the
//                  weights it moves;
//   periodic_eplb  EPLB re-planned every eplb_period steps from the sum of the last eplb_window
//                  steps (what vLLM and SGLang do), its migrations charged the same way;
//   oracle         the better of grace and EPLB planned on each phase in hindsight, moved for
//                  free at each phase start.
// Each step's time is the cost model's layer time summed over layers (exact on tokens for
// token-level phases, expected from the sampled counts otherwise). A migration's time (weights
// over the links plus the fixed cost) is added to the step it happens in.
// The forecast error is the one-step-ahead weighted MAPE, sum |forecast - load| / sum load over
// every (step, layer, expert), for the forecaster and for the last-value forecast.
//
// Pure computation; one call runs one simulation on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/topology.h"
#include "policy/change_detector.h"
#include "policy/cost_model.h"
#include "policy/decision.h"
#include "policy/forecast.h"
#include "policy/online_workload.h"

namespace grace {

struct OnlineSimulationOptions {
  DecisionOptions decision;
  ForecastOptions forecast;
  ChangeDetectorOptions detector;
  int decide_every = 4;        // steps between decisions (and one at each load-shift alarm)
  int warmup_steps = 16;       // observed steps before the first decision
  int eplb_period = 100;       // periodic EPLB: steps between re-plans
  int eplb_window = 100;       // ... and the steps whose loads it sums
  int recent_token_steps = 2;  // token-level phases: recent steps' tokens the decision sees
  double coactivation_decay = 0.9;
};

struct PolicyResult {
  std::string name;
  double total_ms = 0;      // serving plus migrations
  double migration_ms = 0;  // part of total_ms spent moving weights
  int migrations = 0;       // intervals in which weights moved
  int experts_moved = 0;
  uint64_t bytes_moved = 0;
  std::vector<double> step_ms;  // serving time of each step (migrations excluded)
};

struct OnlineSimulationReport {
  PolicyResult static_placement, online, periodic_eplb, oracle;
  // What the oracle's moves would cost had it paid for them like online does: copies from the
  // static plan into its first phase's placement and from each phase's into the next (each
  // aligned to the one before), plus the fixed cost per move. Context for the capture figure:
  // (static - oracle - oracle_move_ms) / (static - oracle) is what perfect hindsight captures
  // once its moves are paid.
  double oracle_move_ms = 0;
  double forecast_mape = 0;
  double last_value_mape = 0;
  int64_t detector_alarms = 0;
  std::vector<int> phase_start_step;
  std::vector<DecisionRecord> decisions;  // online's, realised gains filled in
  int steps = 0;
};

// The share of the oracle's gain over static that a strategy totalling `total_ms` captures,
// (static - total_ms) / (static - oracle); 0 when the oracle gains nothing.
double CaptureOf(const OnlineSimulationReport& report, double total_ms);
// Online's capture, migrations included (the figure).
inline double OnlineCapture(const OnlineSimulationReport& r) {
  return CaptureOf(r, r.online.total_ms);
}
// The oracle's own capture had it paid for its moves (oracle_move_ms).
inline double PaidOracleCapture(const OnlineSimulationReport& r) {
  return CaptureOf(r, r.oracle.total_ms + r.oracle_move_ms);
}

// Where a simulation is, for progress lines: after each served step.
struct OnlineSimulationProgress {
  int step = 0;  // steps served so far
  int total_steps = 0;
  int phase = 0;  // 0-based
  int phases = 0;
  double online_ms = 0;  // online's total so far, migrations included
  double static_ms = 0;
  int migrations = 0;  // online's
};

// `progress`, when set, is called after every step on the calling thread.
StatusOr<OnlineSimulationReport> SimulateOnline(
    WorkloadStream stream, const Topology& topology, const CostParams& params,
    const OnlineSimulationOptions& options,
    const std::function<void(const OnlineSimulationProgress&)>& progress = {});

}  // namespace grace
