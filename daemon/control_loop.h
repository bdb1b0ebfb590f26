// ControlLoop: the heart of graced. It aggregates the agents' load reports, forecasts load,
// decides when a re-placement pays off (policy/online_controller.h), hands the migration to
// a MigrationDriver (daemon/migration_driver.h, the epoch protocol), and keeps the history
// (daemon/history_store.h). It is the ControlPlane the REST API reads and the AgentEvents
// listener of the agent server.
//
// On start it restores the last committed epoch and placement from the store; with an empty
// store it commits epoch 1, planned by grace's policy on uniform load.
//
// Thread contract: AgentEvents callbacks arrive on the agent server's I/O thread, ControlPlane
// calls on HTTP threads, Tick() on graced's control thread; all serialise on one mutex. Tick
// never blocks on the network: messages are queued to the agent server.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/placement.h"
#include "daemon/agent_server.h"
#include "daemon/control_plane.h"
#include "daemon/daemon_config.h"
#include "daemon/history_store.h"
#include "migrate/epoch_coordinator.h"
#include "policy/online_controller.h"
#include "policy/placement_policy.h"

namespace grace {

class ControlLoop : public ControlPlane, public AgentEvents {
 public:
  // `now_ms` is the clock (wall time in ms); tests pass a fake one.
  ControlLoop(DaemonConfig config, std::unique_ptr<HistoryStore> store,
              std::function<int64_t()> now_ms);
  ~ControlLoop() override;

  // Restores or creates the current epoch. Call once, before any other method.
  Status Init();
  // The agent server messages go out through (set before agents connect).
  void SetSender(std::function<bool(const std::string&, const WireMessage&)> send,
                 std::function<std::vector<AgentStatus>()> agents);
  // Runs one round: migration timeouts and progress, and a decision when an interval is due.
  void Tick();

  Epoch epoch();
  Placement placement();

  // ControlPlane
  PolicySettings Policy() override;
  Status SetPolicy(const PolicySettings& settings, const std::string& who) override;
  Status RequestReplan(const std::string& who) override;
  StatusOr<Epoch> ApplyPlacement(const std::string& placement_json,
                                 const std::string& who) override;
  void SetPaused(bool paused, const std::string& who) override;
  std::vector<AgentStatus> Agents() override;
  DaemonMetrics Metrics() override;
  std::vector<IntervalSnapshot> Trends(size_t limit) override;
  std::vector<ForecastSample> ForecastHistory(int layer, size_t limit) override;
  TrafficSnapshot Traffic() override;
  void WithHistory(const std::function<void(HistoryStore&)>& fn) override;

  // AgentEvents
  StatusOr<Welcome> OnAgentJoined(const Hello& hello) override;
  void OnAgentLost(const std::string& agent_id, const std::string& reason) override;
  void OnMessage(const std::string& agent_id, const WireMessage& message) override;
  void OnConnectionRejected(const std::string& peer, const std::string& reason) override;
  void OnFrameRefused(const std::string& agent_id, FrameRefusal why) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grace
