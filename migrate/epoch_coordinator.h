// EpochCoordinator: the daemon's side of one migration through the epoch protocol
// (DESIGN.md, "Migration"):
//
//   Begin:   PREPARE(epoch n+1, placement, transfers) to every agent
//   agents:  copy weights into spare slots in the background, then READY(n+1)
//   all READY -> kReadyToCommit: the caller persists epoch n+1, then calls Commit(), which
//            sends COMMIT(n+1 at step s) with s beyond every step an agent has reported
//   agents:  switch at step s and answer SWITCHED(n+1)
//   all SWITCHED -> kDone: old slots may be released (every rank is past s)
//
// Before COMMIT, a lost or reconnecting agent, an agent's ABORT or a READY timeout aborts:
// ABORT(n+1) goes to every agent, epoch n keeps serving and the staged copies are dropped.
// After COMMIT the epoch is decided (persisted, and possibly carried in band by the agents);
// a lost agent re-syncs to it when it rejoins, and past switch_timeout_ms the coordinator
// stops waiting for SWITCHED (kDone, the agents it waited for in unconfirmed()). No phase
// waits without a deadline. The full state machine is in docs/protocol.md, "Epochs".
//
// Pure logic: time comes in as arguments (no clock inside), messages go out through `send`.
// Thread contract: one thread drives it (graced's control thread).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/placement.h"
#include "core/status.h"
#include "core/wire_protocol.h"
#include "migrate/migration_plan.h"

namespace grace {

struct EpochCoordinatorOptions {
  int64_t ready_timeout_ms = 30000;   // PREPARE -> every READY
  int64_t switch_timeout_ms = 30000;  // COMMIT -> every SWITCHED (then done, unconfirmed)
  uint64_t switch_margin_steps = 8;   // how far past the newest reported step to switch
};

class EpochCoordinator {
 public:
  enum class Phase { kIdle, kPreparing, kReadyToCommit, kCommitted, kDone, kAborted };
  using SendFn = std::function<bool(const std::string& agent_id, const WireMessage& message)>;

  EpochCoordinator(SendFn send, EpochCoordinatorOptions options = {})
      : send_(std::move(send)), options_(options) {}

  // Starts migrating to `epoch` with `placement`; `agents` are the agents that must take part.
  // `expected_load` ([layer][expert], may be empty) travels in PREPARE so that every rank derives
  // the same routing weights.
  Status Begin(Epoch epoch, const Placement& placement, const Topology& topology,
               const MigrationPlan& plan, const std::vector<std::string>& agents, int64_t now_ms,
               std::vector<float> expected_load = {});

  // Inputs from the agent connections.
  void OnReady(const std::string& agent_id, Epoch epoch);
  void OnSwitched(const std::string& agent_id, Epoch epoch, uint64_t step);
  void OnStep(const std::string& agent_id, uint64_t step);  // from heartbeats
  void OnAgentLost(const std::string& agent_id);            // also an agent's Goodbye
  void OnAgentJoined(const std::string& agent_id);

  // Advances timeouts; returns the phase after doing so.
  Phase Poll(int64_t now_ms);
  // In kReadyToCommit, after the caller persisted the epoch: sends COMMIT and returns the step.
  StatusOr<uint64_t> Commit(int64_t now_ms);
  // Aborts a migration that is not committed yet (e.g. the operator paused the daemon).
  void Abort(const std::string& reason);
  // How far past the newest reported step COMMIT switches; graced sizes it from the step rate.
  void set_switch_margin_steps(uint64_t steps) { options_.switch_margin_steps = steps; }
  // Back to kIdle after kDone or kAborted.
  void Reset();

  // The epoch number for the next Begin after `committed`: one past both it and every attempt
  // begun, so that a number names one attempt only (a stale READY, ABORT or COMMIT of an
  // aborted attempt cannot be taken for its retry's, and the agents' copy mesh of a retry
  // rendezvouses on another port than the cancelled one's, agent/epoch_switcher.h).
  Epoch next_epoch(Epoch committed) const {
    return std::max(std::max(committed, last_committed_), last_begun_) + 1;
  }
  Phase phase() const { return phase_; }
  Epoch epoch() const { return epoch_; }
  uint64_t switch_step() const { return switch_step_; }
  const std::string& abort_reason() const { return abort_reason_; }
  // Milliseconds from Begin to the last SWITCHED (valid in kDone).
  int64_t prepare_to_switch_ms() const { return done_ms_ - begin_ms_; }
  // Agents that have not yet answered the current phase.
  std::vector<std::string> Waiting() const;
  // Milliseconds since Begin (0 when idle).
  int64_t age_ms(int64_t now_ms) const;
  // The phase an abort happened in (kPreparing or kReadyToCommit).
  Phase abort_phase() const { return abort_phase_; }
  // In kDone: why the wait for SWITCHED ended early (empty: every agent switched), and whom
  // it waited for.
  const std::string& switch_timed_out() const { return timed_out_; }
  const std::vector<std::string>& unconfirmed() const { return unconfirmed_; }

 private:
  void SendAll(const WireMessage& m);

  SendFn send_;
  EpochCoordinatorOptions options_;
  Phase phase_ = Phase::kIdle;
  Epoch epoch_ = 0;
  Epoch last_committed_ = 0;  // epochs only grow: a new Begin must be past it
  Epoch last_begun_ = 0;      // an aborted attempt uses its number up (see next_epoch())
  std::map<std::string, bool> answered_;  // per participant: READY (preparing) or SWITCHED
  std::map<std::string, uint64_t> steps_;
  uint64_t switch_step_ = 0;
  int64_t begin_ms_ = 0;
  int64_t commit_ms_ = 0;
  int64_t done_ms_ = 0;
  std::string abort_reason_;
  Phase abort_phase_ = Phase::kIdle;
  std::string timed_out_;
  std::vector<std::string> unconfirmed_;
};

const char* EpochPhaseName(EpochCoordinator::Phase phase);

}  // namespace grace
