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
// Before COMMIT, a lost agent or a READY timeout aborts: ABORT(n+1) goes to every agent, epoch n
// keeps serving and the staged copies are dropped. After COMMIT the epoch is decided; a lost
// agent re-syncs to it when it rejoins.
//
// Pure logic: time comes in as arguments (no clock inside), messages go out through `send`.
// Thread contract: one thread drives it (graced's control thread).
#pragma once

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
  int64_t switch_timeout_ms = 30000;  // COMMIT -> every SWITCHED (then reported, not aborted)
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
  void OnAgentLost(const std::string& agent_id);

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

  Phase phase() const { return phase_; }
  Epoch epoch() const { return epoch_; }
  uint64_t switch_step() const { return switch_step_; }
  const std::string& abort_reason() const { return abort_reason_; }
  // Milliseconds from Begin to the last SWITCHED (valid in kDone).
  int64_t prepare_to_switch_ms() const { return done_ms_ - begin_ms_; }
  // When the current migration's PREPARE went out (valid out of kIdle).
  int64_t begin_ms() const { return begin_ms_; }
  // Agents that have not yet answered the current phase.
  std::vector<std::string> Waiting() const;

 private:
  void SendAll(const WireMessage& m);

  SendFn send_;
  EpochCoordinatorOptions options_;
  Phase phase_ = Phase::kIdle;
  Epoch epoch_ = 0;
  Epoch last_committed_ = 0;              // epochs only grow: a new Begin must be past it
  std::map<std::string, bool> answered_;  // per participant: READY (preparing) or SWITCHED
  std::map<std::string, uint64_t> steps_;
  uint64_t switch_step_ = 0;
  int64_t begin_ms_ = 0;
  int64_t commit_ms_ = 0;
  int64_t done_ms_ = 0;
  std::string abort_reason_;
};

const char* EpochPhaseName(EpochCoordinator::Phase phase);

}  // namespace grace
