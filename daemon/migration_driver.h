// MigrationDriver: graced's side of one live migration at a time. It takes a decided target
// (placement, routing states, expected load, the decisions behind it), plans the copies
// (migrate/migration_plan.h), drives the epoch protocol through the EpochCoordinator
// (migrate/epoch_coordinator.h, docs/protocol.md "Epochs"), persists the epoch before COMMIT
// leaves, and tracks each committed decision's realised gain over its horizon.
//
//   MigrationDriver d(send, store, topology);
//   d.Begin(epoch + 1, std::move(target), participants, now);     // PREPARE goes out
//   if (auto done = d.Advance(now, margin, &metrics)) { ... }     // the epoch was committed
//
// Thread contract: not thread-safe; the control loop calls it under its mutex. The
// realisations are read and updated by the control thread outside that mutex, which is the
// only thread that touches them (see ControlLoop::Tick).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/placement.h"
#include "daemon/control_plane.h"
#include "daemon/history_store.h"
#include "migrate/epoch_coordinator.h"
#include "migrate/migration_plan.h"
#include "policy/online_controller.h"

namespace grace {

// What a migration moves to: the new placement and its routing, and what decided it.
struct MigrationTarget {
  Placement placement;
  std::vector<LayerState> states;
  std::vector<float> expected_load;  // behind the routing of `states`; empty: uniform
  std::vector<int64_t> decision_ids;
  std::vector<int> layers;  // the layers it changes
  uint64_t bytes = 0;       // PlanMigration's total
};

// A committed decision's realised gain: its layers' old routing keeps being evaluated on what
// is observed for the horizon, against the routing in force.
struct Realisation {
  std::vector<int64_t> decision_ids;
  std::vector<int> layers;
  std::vector<LayerState> before;
  double gain_ms = 0;
  int intervals_left = 0;
};

class MigrationDriver {
 public:
  MigrationDriver(EpochCoordinator::SendFn send, HistoryStore& store, const Topology& topology,
                  EpochCoordinatorOptions options = {});

  bool idle() const { return coordinator_.phase() == EpochCoordinator::Phase::kIdle; }
  const EpochCoordinator& coordinator() const { return coordinator_; }

  // Sends PREPARE(epoch) to `participants` for `target`; `plan` holds its copies.
  Status Begin(Epoch epoch, MigrationTarget target, const MigrationPlan& plan,
               const std::vector<std::string>& participants, int64_t now_ms);
  // Advances timeouts and progress. When every READY is in, persists the epoch, sends COMMIT
  // `switch_margin_steps` past the newest reported step and returns the committed target;
  // `before` is the routing in force until then (for its realisation). Counts into `metrics`.
  std::optional<MigrationTarget> Advance(int64_t now_ms, uint64_t switch_margin_steps,
                                         const std::vector<LayerState>& before, int horizon,
                                         DaemonMetrics* metrics);
  // Aborts a migration that is not committed yet.
  void Abort(const std::string& reason) { coordinator_.Abort(reason); }

  // Agent inputs.
  void OnStep(const std::string& agent, uint64_t step) { coordinator_.OnStep(agent, step); }
  void OnReady(const std::string& agent, Epoch epoch) { coordinator_.OnReady(agent, epoch); }
  void OnSwitched(const std::string& agent, Epoch epoch, uint64_t step) {
    coordinator_.OnSwitched(agent, epoch, step);
  }
  void OnAgentLost(const std::string& agent) { coordinator_.OnAgentLost(agent); }
  void OnAgentJoined(const std::string& agent) { coordinator_.OnAgentJoined(agent); }
  // The watchdog's gauges: the phase in flight (EpochCoordinator::Phase as a number, 0 idle)
  // and its age since PREPARE.
  void FillGauges(int64_t now_ms, DaemonMetrics* metrics) const;
  // An agent's ABORT: it cannot stage its copies.
  void OnAgentAbort(const std::string& agent, Epoch epoch, const std::string& reason);

  std::vector<Realisation>& realisations() { return realisations_; }

 private:
  HistoryStore& store_;
  const Topology& topology_;
  EpochCoordinator coordinator_;
  std::optional<MigrationTarget> pending_;
  std::vector<Realisation> realisations_;
};

}  // namespace grace
