// SimAgentFleet: many simulated grace-agents in one process, for load-testing graced and for
// integration tests that need agents without a data path. Each simulated agent speaks the real
// wire protocol (core/wire_protocol.h): it proves the cluster secret, advances a step counter at
// a fixed rate, sends heartbeats and load reports (per-expert counts drawn from a skewed,
// drifting distribution once per phase and agent, with a full co-activation section of the top
// pairs of the hottest experts and a traffic section for each of its ranks, as real agents
// send), answers PREPARE with READY after a delay, and COMMIT with SWITCHED once its step
// counter reaches the switch step. Agents connect at a bounded rate.
//
// Thread contract: Start() spawns one I/O thread for all agents; the accessors may be called
// from any thread; Stop() joins it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/topology.h"
#include "tls/tls_setting.h"

namespace grace {

struct SimAgentOptions {
  std::string daemon_host = "127.0.0.1";
  int daemon_port = 8751;
  std::string cluster_secret;
  // graced's [agents] tls: kPsk, TLS 1.3 keyed by the secret (as real agents by default).
  AgentChannelTls tls = AgentChannelTls::kPsk;
  Topology topology;  // one simulated agent per node, serving that node's ranks
  int num_layers = 2;
  int num_experts = 64;
  int top_k = 8;
  int tokens_per_step = 256;  // per rank
  double steps_per_second = 50;
  uint32_t report_ms = 1000;  // overridden by the daemon's Welcome when it sets one
  uint32_t ready_delay_ms = 50;
  double zipf_skew = 1.0;
  int drift_every_reports = 0;  // next phase (or rotated hot set) every N reports (0: never)
  // Real per-expert loads to draw from, [phase][layer][expert] (e.g. a domain-count trace per
  // phase); empty: Zipf(zipf_skew) popularity. Phases advance every drift_every_reports.
  std::vector<std::vector<std::vector<double>>> phase_loads;
  uint64_t seed = 1;
  int coactivation_pairs = 512;  // per layer and report (an agent's coactivation_max_pairs)
  int coactivation_sample_every = 8;
  int hidden = 7168;                  // for the traffic section's bytes (bf16)
  double connects_per_second = 1000;  // agents start connecting at this rate (<= 0: all at once)
};

struct SimAgentStats {
  int connected = 0;
  int refused = 0;
  int failed_starts = 0;  // TLS handshakes that failed (last reason in last_failure)
  std::string last_failure;
  uint64_t reports_sent = 0;
  uint64_t report_bytes = 0;  // the last load report's frame
  uint64_t prepares = 0;
  uint64_t commits = 0;
  uint64_t aborts = 0;
  uint64_t newest_epoch = 0;
};

class SimAgentFleet {
 public:
  explicit SimAgentFleet(SimAgentOptions options);
  ~SimAgentFleet();
  SimAgentFleet(const SimAgentFleet&) = delete;
  SimAgentFleet& operator=(const SimAgentFleet&) = delete;

  Status Start();
  void Stop();
  SimAgentStats Stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grace
