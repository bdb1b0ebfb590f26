// AgentServer: graced's side of the agent connections. Accepts grace-agent TCP connections
// (Boost.Asio), with tls = kPsk (the default) runs TLS 1.3 keyed by the cluster secret
// (tls/agent_channel.h), then the protocol's handshake inside it (Challenge -> Hello with HMAC
// proof of the cluster secret -> Welcome or Refused), and turns frames into calls on an
// AgentEvents listener.
//
// A connection that sends a malformed, oversized or wrong-version frame, or fails the proof, is
// closed with a logged reason; the daemon and every other agent go on. An agent silent for
// longer than lost_after_ms is marked lost and its connection closed; it may reconnect. graced
// in turn sends every joined agent a Heartbeat each heartbeat_ms (unless other frames are still
// on their way to it), so that an agent can detect a silent daemon connection (a lost host, a
// half-open socket) and redial (agent/daemon_client.h).
//
// Before the proof a connection is a stranger, and strangers are bounded: each has
// handshake_timeout_ms to complete TLS and prove the secret, frames of at most
// max_handshake_frame_bytes, and at most max_pending of them are open (a new one closes the oldest,
// so a flood cannot lock out a real agent). Their refusals reach OnConnectionRejected at most
// refusals_per_window times per refusal_window_ms; the rest are summed into one call when the
// window ends. Agent ids must be 1-64 characters of [A-Za-z0-9._:@-] before they are logged or
// stored. The port is bound exclusively. After the handshake, steps are checked against
// max_steps_per_s.
//
// Thread contract: Start() spawns one I/O thread; listener callbacks run on it, one at a time.
// Send/Broadcast/Agents may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/wire_protocol.h"
#include "daemon/control_plane.h"
#include "tls/tls_setting.h"

namespace grace {

struct AgentServerOptions {
  std::string host = "127.0.0.1";
  int port = 8751;  // 0: pick a free port
  std::string cluster_secret;
  // kPsk: TLS 1.3 with a key derived from cluster_secret; kOff: plaintext frames (a test
  // harness's frame proxy). Agents must have the same setting; a mismatch is refused, named.
  AgentChannelTls tls = AgentChannelTls::kPsk;
  uint32_t heartbeat_ms = 500;
  uint32_t report_ms = 1000;
  uint32_t lost_after_ms = 3000;
  uint32_t max_frame_bytes = kDefaultMaxPayloadBytes;
  uint32_t handshake_timeout_ms = 3000;
  uint32_t max_pending = 256;
  uint32_t max_handshake_frame_bytes = 16 * 1024;  // a Hello with the agent's placement must fit
  uint32_t refusals_per_window = 10;
  uint32_t refusal_window_ms = 60000;
  // The fastest an agent's step may advance: a Heartbeat, LoadReport or Switched whose step is
  // beyond (seconds since its last step + 1) x this is refused and logged, never passed on
  // (a frame injected on the path cannot move the fleet's switch step to step 10^9). A
  // connection's first step is its baseline.
  uint64_t max_steps_per_s = 100000;
};

// Ok when `id` may name an agent in logs and history: 1-64 characters of [A-Za-z0-9._:@-].
Status ValidateAgentId(std::string_view id);

// Called on the I/O thread.
class AgentEvents {
 public:
  virtual ~AgentEvents() = default;
  // A new agent proved the secret. Returns the Welcome to send (current epoch and placement),
  // or a non-ok Status to refuse it with that reason.
  virtual StatusOr<Welcome> OnAgentJoined(const Hello& hello) = 0;
  virtual void OnAgentLost(const std::string& agent_id, const std::string& reason) = 0;
  // Every message after the handshake, heartbeats included.
  virtual void OnMessage(const std::string& agent_id, const WireMessage& message) = 0;
  // A connection was refused or closed for bad input (for the event log); rate-limited.
  virtual void OnConnectionRejected(const std::string& peer, const std::string& reason) = 0;
  // A joined agent's frame was refused by a protocol-state check (already logged, sparingly).
  virtual void OnFrameRefused(const std::string& /*agent_id*/, FrameRefusal /*why*/) {}
};

class AgentServer {
 public:
  AgentServer(AgentEvents& events, AgentServerOptions options);
  ~AgentServer();
  AgentServer(const AgentServer&) = delete;
  AgentServer& operator=(const AgentServer&) = delete;

  Status Start();
  void Stop();
  int port() const;

  // Queues `message` to one agent (false when it is not connected) or to all.
  bool Send(const std::string& agent_id, const WireMessage& message);
  void Broadcast(const WireMessage& message);
  std::vector<AgentStatus> Agents() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grace
