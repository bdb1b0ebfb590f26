// MigrationTestDaemon: plays graced's part of the epoch protocol for the migration tests and
// `gracectl bench migration`, from daemon-free pieces: AgentServer (handshake, frames),
// PlanMigration (the transfers) and EpochCoordinator (PREPARE/READY/COMMIT/SWITCHED, aborts).
// It keeps the current epoch and placement and welcomes (re)joining agents with them.
//
//   MigrationTestDaemon d({.topology = topo, .placement = p, .bytes_per_expert = b, ...});
//   GRACE_RETURN_IF_ERROR(d.Start());               // d.port() for agent.toml [daemon]
//   GRACE_RETURN_IF_ERROR(d.WaitForAgents(4, 30s));
//   GRACE_ASSIGN_OR_RETURN(MigrationOutcome m, d.Migrate(next, 30s));
//
// Thread contract: AgentServer's I/O thread delivers events; Migrate/WaitFor* run on one caller
// thread; a mutex guards the shared state.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/placement.h"
#include "core/topology.h"
#include "daemon/agent_server.h"
#include "migrate/epoch_coordinator.h"

namespace grace {

struct MigrationTestDaemonOptions {
  Topology topology;
  Placement placement;  // epoch 1
  uint64_t bytes_per_expert = 0;
  std::string cluster_secret = "grace-test-secret";
  AgentChannelTls agent_tls = AgentChannelTls::kPsk;
  uint32_t heartbeat_ms = 20;
  uint32_t report_ms = 200;
  uint32_t lost_after_ms = 1000;
  EpochCoordinatorOptions coordinator;
};

struct MigrationOutcome {
  Epoch epoch = 0;
  bool switched = false;                 // committed and every agent answered SWITCHED
  bool committed = false;                // COMMIT went out (switched, or SWITCHED not all in time)
  std::vector<std::string> unconfirmed;  // committed, no SWITCHED within switch_timeout_ms
  std::string abort_reason;
  uint64_t switch_step = 0;
  uint64_t bytes_minimum = 0;  // PlanMigration's total
  size_t transfers = 0;
  double prepare_to_switch_ms = 0;
};

class MigrationTestDaemon final : public AgentEvents {
 public:
  explicit MigrationTestDaemon(MigrationTestDaemonOptions options);
  ~MigrationTestDaemon() override;

  Status Start();
  void Stop();
  int port() const;

  // Returns once `agents` agents are connected (all known ones, when they rejoin).
  Status WaitForAgents(int agents, std::chrono::milliseconds timeout);
  // Returns once some agent has reported a step >= `step`.
  Status WaitForStep(uint64_t step, std::chrono::milliseconds timeout);
  uint64_t newest_step() const;

  // Runs one migration to `to` (epoch + 1). `after_prepare` runs once PREPARE is out (the
  // SIGKILL test kills an agent there). An abort is an outcome, not an error.
  StatusOr<MigrationOutcome> Migrate(const Placement& to, std::chrono::milliseconds timeout,
                                     const std::function<void()>& after_prepare = {});

  Epoch epoch() const;
  Placement placement() const;
  uint64_t load_reports() const;
  std::map<std::string, Epoch> joined_at_epoch() const;  // the epoch each agent's Hello had
  std::map<std::string, Epoch> serving_epoch() const;    // from each agent's last Heartbeat
  std::set<std::string> left() const;                    // agents that said Goodbye
  // Each rank's spare slots, from its agent's Hello (absent: not limited, -1).
  std::vector<int> spare_slots_per_rank() const;
  bool connected(const std::string& agent_id) const;
  // A restarted daemon's persisted state: the committed epoch and its placement.
  void Restore(Epoch epoch, const Placement& placement);

  // AgentEvents (I/O thread).
  StatusOr<Welcome> OnAgentJoined(const Hello& hello) override;
  void OnAgentLost(const std::string& agent_id, const std::string& reason) override;
  void OnMessage(const std::string& agent_id, const WireMessage& message) override;
  void OnConnectionRejected(const std::string& peer, const std::string& reason) override;

 private:
  MigrationTestDaemonOptions options_;
  std::unique_ptr<AgentServer> server_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  EpochCoordinator coordinator_;
  Epoch epoch_ = 1;
  Placement placement_;
  std::map<std::string, uint64_t> connected_;  // agent -> newest step
  std::map<std::string, Epoch> hello_epoch_;
  std::map<std::string, Epoch> heartbeat_epoch_;
  uint64_t newest_step_ = 0;
  uint64_t load_reports_ = 0;
  std::set<std::string> left_;
  std::map<RankId, int> spare_slots_;
};

}  // namespace grace
