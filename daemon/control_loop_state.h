// ControlLoop::Impl: graced's state behind ControlLoop (daemon/control_loop.h), private to
// the control loop's three files:
//   control_loop.cc       start-up and restore, the agents' messages, the ControlPlane calls;
//   control_round.cc      the interval round (Tick: take the interval, compute, apply);
//   control_migration.cc  starting migrations (the policy's or an operator's) and advancing them.
// Thread contract: control_loop.h's. Every call serialises on `mu`, except the round's Compute
// (control_round.cc), which reads only what the control thread alone writes.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/control_loop.h"
#include "daemon/interval_coactivation.h"
#include "daemon/measured_traffic.h"
#include "daemon/migration_driver.h"
#include "migrate/migration_plan.h"
#include "policy/cost_model.h"

namespace grace {

// How the operator's policy maps onto the decider. Time-based knobs (cool-down) stay in the
// control loop; the decider's own cool-down is per layer and in steps.
DecisionOptions DecisionOptionsFor(const PolicySettings& policy, int steps_per_interval);

struct ControlLoop::Impl {
  Impl(DaemonConfig c, std::unique_ptr<HistoryStore> s, std::function<int64_t()> now);

  int layers() const { return static_cast<int>(config.model.layer_ids.size()); }
  int experts() const { return config.model.num_experts; }
  const Topology& topology() const { return config.topology; }

  void MakeController();

  // Routing of every layer for `load` ([layer][expert], empty: uniform).
  std::vector<LayerState> StatesFor(const Placement& p, const std::vector<float>& load) const;

  Status Init();

  // An agent serves a later epoch than the history holds: grace.db was lost or replaced. Its
  // epoch and placement become graced's (committed, so they survive a restart); planning from
  // the history's placement instead would send PREPAREs the agents refuse, for ever.
  Status AdoptAgentEpoch(const Hello& hello);

  // --- Agent messages (I/O thread, under mu) ---------------------------------------------------
  void OnLoadReport(const std::string& agent, const LoadReport& r);

  // An agent that keeps sending a bad section is logged at its 1st, 2nd, 4th, 8th ... refusal,
  // not once a report; the metrics count every one.
  void WarnRefused(const std::string& agent, const std::string& reason);

  // --- The control round ------------------------------------------------------------------
  // Tick runs on the control thread in three phases so that forecasting and deciding (the slow
  // part at DeepSeek scale) never hold `mu`, which the agent I/O thread and HTTP threads need:
  //   TakeInterval (under mu)  moves this interval's reports out of the shared state;
  //   Compute (no lock)        observes, evaluates and decides; it reads `states`, `controller`
  //                            and `realisations`, which only the control thread writes;
  //   ApplyInterval (under mu) records load, metrics, realised gains and starts a migration.
  struct IntervalInput {
    int64_t now = 0;
    uint64_t steps = 0;
    uint64_t newest_step = 0;
    std::vector<double> per_step;
    std::vector<CoactivationPair> pairs;
    PolicySettings policy;
    bool decide = false;
    bool forced = false;
  };
  struct IntervalOutput {
    std::vector<double> imbalance, cross_node;
    double forecast_wmape = 0, last_value_wmape = 0;
    std::optional<Decision> decision;
    std::vector<float> forecast_load;
    std::vector<float> predicted;  // the one-interval-ahead forecast made last interval
    // This interval's |forecast - load| and |last value - load| summed over experts, and its
    // load: the metrics' counters (0 before the forecaster had seen anything).
    double forecast_abs_error = 0, last_value_abs_error = 0, load = 0;
  };

  void Tick();

  // Returns false when there was nothing to observe.
  bool TakeInterval(int64_t now, IntervalInput* in);

  IntervalOutput Compute(const IntervalInput& in);

  void ApplyInterval(const IntervalInput& in, IntervalOutput out);

  LayerStats ObservedStats(const std::vector<double>& per_step, int l) const;

  void StartMigration(int64_t now, bool forced, const Decision& decision,
                      std::vector<float> forecast_load);

  // Sends PREPARE of the next epoch for `target` to every agent that is up.
  StatusOr<Epoch> BeginMigration(int64_t now, MigrationTarget target, const MigrationPlan& plan);

  // An operator's placement (POST /api/v1/placement), past the policy's thresholds.
  StatusOr<Epoch> ApplyPlacement(const std::string& json, const std::string& who);

  std::string ReplicaCapViolation(const Placement& p) const;

  void RecordNone(int64_t now, const std::string& reason);

  void AdvanceMigration(int64_t now);

  DaemonConfig config;
  std::unique_ptr<HistoryStore> store;
  std::function<int64_t()> now_ms;
  CostParams params;
  std::function<bool(const std::string&, const WireMessage&)> send;
  std::function<std::vector<AgentStatus>()> agents;

  std::mutex mu;
  PolicySettings policy;
  bool paused = false;
  bool replan_requested = false;
  bool rebuild_controller = false;
  Epoch epoch = 0;
  // The agents taking part in the current (or last) migration: only they may answer it.
  std::set<std::string> migration_agents;
  uint64_t refused_answers = 0;  // READY/SWITCHED/ABORT from agents not in it
  Placement placement;
  Epoch welcome_epoch = 0;             // the epoch welcome_placement_json was written for
  std::string welcome_placement_json;  // PlacementToJson(placement), for Welcome
  std::vector<LayerState> states;
  std::vector<float> expected_load;  // behind the routing of `states`; empty: uniform

  std::unique_ptr<PlacementPolicy> planner;
  std::unique_ptr<OnlineController> controller;
  MigrationDriver migration;

  std::vector<double> counts;  // this interval, [layer][expert]
  IntervalCoactivation pairs;  // this interval's, summed per pair
  MeasuredTrafficTotals measured{layers(), topology().ranks(), topology().slots_per_gpu};
  std::map<std::string, uint64_t> agent_steps;  // steps each agent reported this interval
  std::map<std::string, uint64_t> refusals;     // sections refused per agent, for the log
  std::set<std::string> left;                   // said Goodbye; their close is not a loss
  uint64_t newest_step = 0;
  int steps_per_interval = 1;
  int64_t next_interval_ms = 0;
  int64_t last_migration_ms = INT64_MIN / 2;
  int64_t last_compact_ms = 0;
  DaemonMetrics metrics;

  // The UI's recent windows, in memory: the store keeps the long history.
  static constexpr size_t kTrendWindow = 720;     // 12 minutes at 1 s intervals
  static constexpr size_t kForecastWindow = 120;  // every layer's load and forecast
  struct ForecastRecord {
    int64_t time_ms = 0;
    std::vector<float> actual, predicted;  // [layer][expert]; predicted may be empty
  };
  std::deque<IntervalSnapshot> trends;
  std::deque<ForecastRecord> forecasts;
};

}  // namespace grace
