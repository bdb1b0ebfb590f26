// DaemonClient: the agent's control connection to graced (core/wire_protocol.h), and the
// agent's side of the epoch protocol (DESIGN.md, "Migration").
//
//   Connect()  dials [daemon].address with backoff, answers Challenge with Hello (HMAC proof of
//              the cluster secret, this agent's ranks and epoch) and returns the Welcome: the
//              current epoch, placement and expected load, from which EpochRoutingTable
//              (agent/epoch_switcher.h) builds the same table on every rank (an agent restarted
//              at an older epoch so loads the current placement's weights before serving).
//   Run()      until every local worker has finished: Heartbeat{step, epoch} every heartbeat_ms,
//              LoadReport every report_ms (the workers' per-expert counts, top co-activation
//              pairs and dispatch traffic, agent/live_counters.h) and a last one when they
//              finish, and PREPARE, COMMIT and ABORT handed to an EpochSwitcher
//              (agent/epoch_switcher.h). A lost connection is redialled with backoff (Hello
//              carries the serving epoch); a migration without READY is dropped, one in doubt
//              is decided by the new Welcome's epoch (a live re-sync, no restart). graced
//              sends at least a Heartbeat every heartbeat_ms, so a connection that brings
//              nothing for DaemonSilenceLimit is taken as lost (half-open: a lost host, a
//              dropped route) and redialled the same way, logged.
//
// Thread contract: Connect() and Run() on the agent's control thread; workers only read the
// ServingState it publishes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "agent/agent_config.h"
#include "agent/migration_executor.h"
#include "agent/serving_state.h"
#include "core/wire_protocol.h"

namespace grace {

// How long the agent waits without a byte from graced before it redials: six of graced's
// heartbeat intervals (the Welcome's heartbeat_ms), at least 3 s.
std::chrono::milliseconds DaemonSilenceLimit(uint32_t heartbeat_ms);

class DaemonClient {
 public:
  explicit DaemonClient(const AgentConfig& config);
  ~DaemonClient();
  DaemonClient(const DaemonClient&) = delete;
  DaemonClient& operator=(const DaemonClient&) = delete;

  // First connection; fails after [transport].connect_timeout_ms without a Welcome.
  StatusOr<Welcome> Connect(Epoch epoch);

  // Serves the protocol until every worker of `state` has finished. `sources[i]` are local
  // rank i's slot weights (updated at each switch). Once `*stop` is set (SIGTERM) the workers
  // end at a common step, the last report and a Goodbye go out, and Run returns.
  Status Run(ServingState& state, std::vector<RankSlotWeights>& sources,
             const std::atomic<bool>* stop = nullptr);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grace
