// EpochSwitcher: the agent's side of one migration at a time through the epoch protocol
// (DESIGN.md, "Migration"), driven by DaemonClient with the daemon's messages:
//   PREPARE(n+1, placement, transfers) -> build epoch n+1's routing table, copy into staging
//       over the migration mesh (agent/migration_executor.h, one background thread per local
//       rank, lowest CPU priority), then into spare physical slots of the rank's backend
//       (agent/slot_staging.h); with [migration].transport = "nccl", device to device straight
//       into the spare slots instead (agent/device_migration_executor.h) -> publish {current, next
//       = n+1 staged, its slot maps, in doubt} -> READY once every rank has staged;
//   COMMIT(n+1, s) -> publish the switch step s; the workers switch at the first step >= s
//       at which some rank knows the commit, agreed in band (agent/epoch_agreement.h), so a
//       late or lost COMMIT still switches every rank at the same step -> SWITCHED(n+1, the
//       step) once every local worker serves n+1 -> publish {next}; the old view and buffers go
//       with their last reader; the physical slots the old maps named return to the backend's
//       pool once every rank of the job serves n+1 (RankProgress::mesh_epoch);
//   ABORT, a failed copy (ABORT to the daemon) or a lost connection before READY -> cancel the
//       copies, drop the staged buffers and return the staged slots; epoch n serves on. A lost
//       connection after READY leaves the migration in doubt: the reconnection's Welcome decides it
//       (its epoch is n+1: committed, switch now; n: aborted, drop); a PREPARE of a later epoch
//       means committed.
// Each outcome is appended to <output dir>/<agent id>.migrations.jsonl (bytes staged and sent,
// time since PREPARE), which `gracectl bench migration` sums.
//
// Thread contract: the agent's control thread calls every method; the workers only read what it
// publishes. Copy threads of a cancelled migration are reaped by Advance(), never waited for.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "agent/agent_config.h"
#include "agent/migration_executor.h"
#include "agent/serving_state.h"
#include "agent/slot_staging.h"
#include "core/placement.h"
#include "core/routing_table.h"
#include "core/wire_protocol.h"

namespace grace {

// The routing table every rank derives for an epoch: locality routing (policy/) of each layer
// from the placement and expected load ([layer][expert]; empty: uniform), so all ranks agree.
StatusOr<std::shared_ptr<const RoutingTable>> EpochRoutingTable(
    Epoch epoch, const Topology& topology, const Placement& placement,
    std::span<const float> expected_load);

class EpochSwitcher {
 public:
  // `send` queues a message to the daemon; false when it could not (retried by Advance()).
  using SendFn = std::function<bool(const WireMessage&)>;
  // `sources[i]`: local rank i's slot weights (host copies for the TCP migration path; empty
  // with [migration].transport = "nccl", which sends device slots), replaced at each switch.
  EpochSwitcher(const AgentConfig& config, ServingState& state,
                std::vector<RankSlotWeights>& sources, SendFn send);
  ~EpochSwitcher();
  EpochSwitcher(const EpochSwitcher&) = delete;
  EpochSwitcher& operator=(const EpochSwitcher&) = delete;

  void OnPrepare(const Prepare& p);
  void OnCommit(const Commit& m);
  void OnAbort(const Abort& m);
  // The daemon connection was lost: drops a migration that has not sent READY.
  void OnDisconnected();
  // The Welcome of a reconnection: its epoch decides a migration in doubt (READY sent, no
  // COMMIT or ABORT heard): switch to it when it is the staged one, else drop it.
  void OnWelcome(const Welcome& w);
  // Sends READY or SWITCHED when due, publishes the clean view, reaps cancelled copies.
  void Advance();
  // Drops a migration that is not committed (the daemon connection was lost, or shutdown).
  void DropUncommitted();

  Epoch serving_epoch() const { return state_.view.load()->current->epoch(); }
  // Whether `epoch` is staged and committed here, the workers about to switch to it.
  bool switching_to(Epoch epoch) const {
    return pending_ != nullptr && pending_->epoch == epoch && pending_->committed;
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    Epoch epoch = 0;
    Placement placement;
    std::shared_ptr<const RoutingTable> table;
    std::vector<std::thread> threads;
    std::vector<StatusOr<StagedCopies>> results;
    std::vector<std::optional<BackendStaging>> staging;  // per local rank, once staged
    std::atomic<int> finished{0};
    std::atomic<bool> cancel{false};
    bool ready_sent = false;
    bool failed = false;
    bool failure_reported = false;  // a failed copy's ABORT went to the daemon
    bool committed = false;
    uint64_t switch_step = 0;
    Clock::time_point prepared_at;
  };

  void LogOutcome(const char* result, const std::string& detail);
  void LogOutcome(const Pending& p, const char* result, const std::string& detail);
  // Logs a failed copy of `p` once and tells the daemon (an ABORT, with its cause); with
  // `integrity_only`, only weights that failed their digest (of a migration already dropped).
  bool ReportFailedCopy(Pending& p, bool integrity_only);
  // Publishes {current, next = staged, switch_step, staged slots}; a real switch step marks
  // the migration committed, kNoSwitchStep publishes it in doubt.
  void Publish(uint64_t switch_step);
  // The staged `epoch` is known committed without its COMMIT: switch from the current step.
  void CommitLocally(Epoch epoch, const char* why);
  // Returns the slots old maps named once every rank serves past their switch.
  void ReleaseReplacedSlots();
  // Returns the slots a dropped migration staged (its threads have all finished).
  void ReleaseStagedSlots(Pending& p);

  const AgentConfig& c_;
  ServingState& state_;
  std::vector<RankSlotWeights>& sources_;
  SendFn send_;
  std::unique_ptr<Pending> pending_;
  // A PREPARE that came while a committed migration had not switched yet.
  std::optional<Prepare> deferred_;
  // Cancelled migrations whose copy threads have not returned yet (one may sit in the mesh
  // rendezvous until its timeout); reaped once they have, so the control loop never waits.
  std::vector<std::unique_ptr<Pending>> retired_;
  // Per local rank: the slot map of the serving epoch, and the physical slots replaced by
  // switches (the epoch each came with) not yet returned to the pool.
  struct Replaced {
    Epoch epoch = 0;
    std::vector<PhysicalSlot> slots;
  };
  std::vector<std::shared_ptr<const SlotMap>> maps_;
  std::vector<std::vector<Replaced>> replaced_;
};

}  // namespace grace
