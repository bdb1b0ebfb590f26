// DaemonConnection: the agent's socket to graced's agent port, plaintext or TLS-PSK
// (tls/agent_channel.h), in blocking calls that each end by a deadline or wait: DaemonClient
// (agent/daemon_client.h) speaks the wire protocol through it, and tests use it as an agent.
//
//   DaemonConnection conn("10.0.0.1:8751", AgentChannelTls::kPsk, secret);
//   GRACE_RETURN_IF_ERROR(conn.Open(deadline));     // connect, banner, TLS handshake
//   GRACE_RETURN_IF_ERROR(conn.Send(frame, deadline));
//   GRACE_RETURN_IF_ERROR(conn.Receive(50ms, &bytes));  // appends what has arrived
//
// FailedPrecondition means retrying will not help (the tls settings of the two sides differ,
// or the cluster secrets do) and its message says which key to change; Unavailable and
// DeadlineExceeded mean the connection is gone (closed, reset, timed out, or a TLS record that
// failed its integrity check), to be redialled.
//
// Thread contract: one thread (the agent's control thread) at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"
#include "tls/tls_setting.h"

namespace grace {

class DaemonConnection {
 public:
  using Clock = std::chrono::steady_clock;

  // `address`: "host:port".
  DaemonConnection(std::string address, AgentChannelTls tls, std::string cluster_secret);
  ~DaemonConnection();
  DaemonConnection(const DaemonConnection&) = delete;
  DaemonConnection& operator=(const DaemonConnection&) = delete;

  // Closes any previous connection, dials, and with tls = "psk" reads graced's banner and
  // completes the handshake, all before `deadline`.
  Status Open(Clock::time_point deadline);
  // Waits at most `wait` for bytes and appends every byte that has arrived to `*in` (none is
  // ok). A plaintext agent that meets graced's TLS banner fails with FailedPrecondition.
  Status Receive(std::chrono::milliseconds wait, std::string* in);
  // All of `bytes` before `deadline`; else the connection is closed (a frame cut short cannot
  // be resumed) and the call fails.
  Status Send(std::string_view bytes, Clock::time_point deadline);
  void Close();
  bool is_open() const;
  const std::string& address() const { return address_; }

 private:
  class Tls;
  Status Connect(Clock::time_point deadline);
  Status CheckFirstPlaintext(std::string_view first);
  // `why` now, or Ok when this call `delivered` bytes and `why` the next call.
  Status Ended(Status why, bool delivered);

  std::string address_;
  AgentChannelTls setting_;
  std::string cluster_secret_;
  int fd_ = -1;
  bool received_any_ = false;
  Status ended_;  // how the connection ended, after the bytes delivered before it
  std::unique_ptr<Tls> tls_;
};

}  // namespace grace
