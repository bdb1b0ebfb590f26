// AgentConfig: what one grace-agent process runs, read from agent.toml (see
// config/agent.example.toml for every key, its default and meaning).
//
//   GRACE_ASSIGN_OR_RETURN(AgentConfig config, LoadAgentConfig("agent.toml"));
//
// Unknown tables or keys are refused with the key named. A plain value; parse once at start-up.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"
#include "core/topology.h"
#include "kernels/model_shape.h"
#include "tls/tls_setting.h"

namespace grace {

struct AgentConfig {
  std::string source;  // the file it was read from, for messages

  // [cluster]: every rank of the job, not just this process's.
  Topology topology;  // nodes, gpus_per_node (= ranks_per_node), slots_per_gpu

  // [agent]
  int first_rank = 0;           // global rank of this process's first worker
  int local_ranks = 1;          // workers in this process: GPUs, or CPU ranks on a CPU machine
  std::string backend = "cpu";  // "cpu" or "cuda"

  // [transport]
  std::string transport = "tcp";  // "tcp", or "nccl" (backend "cuda": records device to device)
  std::string rendezvous_host = "127.0.0.1";
  uint16_t rendezvous_port = 29500;
  std::string listen_host = "127.0.0.1";
  int connect_timeout_ms = 30000;
  // kind = "nccl", or [migration].transport = "nccl": set-up and each exchange (each migration
  // chunk), then abort.
  int nccl_timeout_ms = 60000;

  // [model]
  ModelShape model;

  // [weights]
  uint64_t weights_seed = 1;
  std::string weights_file;  // safetensors; overrides the seed

  // [placement]
  std::string placement_file;  // placement JSON; empty: contiguous, spares hold replicas

  // [replay]
  std::string trace_file;  // native trace; empty: generated tokens through the gate
  int steps = 0;           // 0: every step of the trace (4 without a trace)
  int tokens_per_rank = 32;
  double steps_per_second = 0;        // 0: as fast as possible
  bool loop = false;                  // start the trace over at its end (until stopped or `steps`)
  uint64_t seed = 7;                  // hidden states and replica choice
  int coactivation_sample_every = 8;  // co-activation counted on 1 token in this many
  int coactivation_max_pairs = 512;   // per layer and report: the highest-count pairs sent

  // [daemon]: empty address: standalone (the placement file, no migrations).
  std::string daemon_address;   // "host:port" of graced's agent listener
  std::string cluster_secret;   // else $GRACE_CLUSTER_SECRET
  std::string agent_id;         // default "agent<first_rank>"
  int reconnect_max_ms = 2000;  // backoff cap between connection attempts
  // "psk": TLS 1.3 keyed by the cluster secret (tls/agent_channel.h); "off": plaintext, only
  // for a test harness that reads the frames. graced's [agents] tls must agree.
  AgentChannelTls daemon_tls = AgentChannelTls::kPsk;

  // [migration]: weight copies run over their own TCP mesh, never the data path's.
  // "tcp": host buffers over the mesh, then uploaded into spare slots; "nccl" (backend "cuda"):
  // device to device over a migration NCCL communicator formed over the mesh, straight into
  // spare device slots ([transport].nccl_timeout_ms bounds its set-up and each chunk).
  std::string migration_transport = "tcp";
  std::string migration_rendezvous_host = "127.0.0.1";
  uint16_t migration_rendezvous_port = 29600;
  int chunk_bytes = 256 << 10;
  double max_bytes_per_s = 0;  // 0: no rate cap
  double step_budget = 1.25;   // pause copies while a step takes longer than this x its baseline
  // Physical expert slots per layer beyond slots_per_rank, staged into before READY; default
  // slots_per_rank. A migration that needs more new slots on a rank runs in rounds (graced).
  int spare_slots = 0;

  // [output]
  std::string output_dir = ".";
  bool write_outputs = false;  // rank<r>.outputs: every home token's final hidden state
};

StatusOr<AgentConfig> ParseAgentConfig(std::string_view toml_text, const std::string& source);
StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);

}  // namespace grace
