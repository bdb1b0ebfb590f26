// DaemonConfig: everything graced needs to start, read from graced.toml and then overridden by
// command-line flags (--http, --agents, --state-dir) and the environment (GRACE_API_TOKEN,
// GRACE_CLUSTER_SECRET). Unknown keys are refused, naming the key and line.
//
//   [daemon]   http, agents, state_dir, web_root, initial_placement, api_token, cluster_secret
//   [http]     tls_cert_file, tls_key_file, allow_plaintext (the REST API's transport)
//   [agents]   heartbeat_ms, report_ms, lost_after_ms, max_frame_mb, ready_timeout_ms,
//              switch_timeout_ms, tls ("psk" or "off", tls/tls_setting.h)
//   [topology] as core/topology.h
//   [model]    num_experts, top_k, layers (array of layer ids), hidden, expert_ffn
//   [policy]   the fields of PolicySettings (daemon/policy_settings.h)
//
// A plain value, built once at start-up.
#pragma once

#include <string>
#include <vector>

#include "core/ids.h"
#include "core/status.h"
#include "core/topology.h"
#include "daemon/policy_settings.h"
#include "tls/tls_setting.h"

namespace grace {

struct ServedModel {
  int num_experts = 64;
  int top_k = 8;
  std::vector<LayerId> layer_ids = {0, 1};
  int hidden = 1024;
  int expert_ffn = 512;
};

struct DaemonConfig {
  std::string http_host = "127.0.0.1";
  int http_port = 8750;
  std::string agents_host = "127.0.0.1";
  int agents_port = 8751;
  std::string state_dir = "/var/lib/grace";
  std::string web_root;  // empty: the build tree's staged UI, else the installed one
  // grace's placement JSON (`gracectl plan -o`) for epoch 1 when the history is empty; empty:
  // EPLB's packing on uniform load.
  std::string initial_placement;
  std::string api_token;
  std::string cluster_secret;

  // [http]: the REST API over TLS when both files are set (PEM: the certificate chain, server
  // first, and its unencrypted key). Without them the listener must be on loopback, unless
  // http_allow_plaintext (see CheckHttpTransport).
  std::string http_tls_cert_file;
  std::string http_tls_key_file;
  bool http_allow_plaintext = false;

  uint32_t heartbeat_ms = 500;
  uint32_t report_ms = 1000;
  uint32_t lost_after_ms = 5000;
  uint32_t max_frame_mb = 64;
  // The migration watchdog (migrate/epoch_coordinator.h): PREPARE -> every READY (then
  // aborted), COMMIT -> every SWITCHED (then done, the late agents named).
  uint32_t ready_timeout_ms = 30000;
  uint32_t switch_timeout_ms = 30000;
  // The agent channel's transport: TLS 1.3 keyed by the cluster secret, or plaintext (only for
  // a test harness that reads the frames). Every agent's [daemon] tls must agree.
  AgentChannelTls agents_tls = AgentChannelTls::kPsk;

  Topology topology{.nodes = 2, .gpus_per_node = 2, .slots_per_gpu = 18};  // a laptop demo
  ServedModel model;
  PolicySettings policy;
};

// Parses graced.toml text (`source` names it in errors).
StatusOr<DaemonConfig> ParseDaemonConfig(std::string_view toml_text, const std::string& source);

// The REST listener's transport rule, checked once the flags have set the address: TLS needs
// both files; plaintext is for loopback (127.0.0.0/8, ::1, localhost) unless
// http_allow_plaintext. The refusal names the field to set.
Status CheckHttpTransport(const DaemonConfig& c);

// Whether `host` names only this machine (127.0.0.0/8, ::1, localhost).
bool IsLoopbackHost(const std::string& host);

// Splits "host:port"; the message names `flag` when it is malformed.
Status ParseHostPort(const std::string& text, const std::string& flag, std::string* host,
                     int* port);

}  // namespace grace
