// MigrationDriver: graced's side of one live migration at a time. It takes a decided target
// (placement, routing states, expected load, the decisions behind it), plans the copies
// (migrate/migration_plan.h), drives the epoch protocol through the EpochCoordinator
// (migrate/epoch_coordinator.h, docs/protocol.md "Epochs"), persists the epoch before COMMIT
// leaves, and tracks each committed decision's realised gain over its horizon.
//
// Rounds: a target that needs more new experts on some (rank, layer) than that rank's spare
// slots (each agent's Hello says how many) runs as several migrations, one epoch each
// (migrate/migration_rounds.h): every round is a full PREPARE/READY/COMMIT/SWITCHED, is
// persisted and returned by Advance like any migration, and records a "migration_round"
// decision; the next round begins as soon as the previous one is done. An abort ends the rounds
// at the last committed one (a valid placement); the policy plans again from there.
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
#include <map>
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

  // Sends PREPARE(epoch) to `participants` for `target`; `plan` holds its copies. With `from`
  // (the placement in force), a target too big for the agents' spare slots runs in rounds.
  Status Begin(Epoch epoch, MigrationTarget target, const MigrationPlan& plan,
               const std::vector<std::string>& participants, int64_t now_ms,
               const Placement* from = nullptr);
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
  // `spare_slots`: the Hello's (absent: not limited), for each of its `ranks`.
  void OnAgentJoined(const std::string& agent, const std::vector<RankId>& ranks = {},
                     std::optional<int32_t> spare_slots = std::nullopt);
  // Rounds of the migration in flight (0 when it runs at once) and the one in flight (from 1).
  int rounds() const { return rounds_ ? static_cast<int>(rounds_->placements.size()) : 0; }
  int round() const { return rounds_ ? static_cast<int>(rounds_->next) + 1 : 0; }
  // The watchdog's gauges: the phase in flight (EpochCoordinator::Phase as a number, 0 idle)
  // and its age since PREPARE.
  void FillGauges(int64_t now_ms, DaemonMetrics* metrics) const;
  // An agent's ABORT: it cannot stage its copies.
  void OnAgentAbort(const std::string& agent, Epoch epoch, const std::string& reason);

  std::vector<Realisation>& realisations() { return realisations_; }

 private:
  struct Rounds {
    std::vector<Placement> placements;  // one per round, the last the target's
    size_t next = 0;                    // the round in flight
    MigrationTarget target;             // the whole migration's
    std::vector<std::string> participants;
    uint64_t bytes_per_expert = 0;
    std::vector<LayerState> before;  // the routing in force before the first round
    Epoch committed = 0;             // the last round's epoch committed
  };
  // Sends PREPARE for round rounds_->next, planned from `from`.
  Status BeginRound(Epoch epoch, const Placement& from, int64_t now_ms);
  // The routing of an intermediate round: the target's for the layers it has reached, else
  // locality routing on the row (as the agents derive it).
  std::vector<LayerState> RoundStates(const Placement& p) const;
  std::vector<int> SparePerRank() const;

  HistoryStore& store_;
  const Topology& topology_;
  EpochCoordinator coordinator_;
  std::optional<MigrationTarget> pending_;
  std::optional<Rounds> rounds_;
  std::map<RankId, int> spare_by_rank_;  // -1: not limited
  std::vector<Realisation> realisations_;
};

}  // namespace grace
