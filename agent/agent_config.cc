#include "agent/agent_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/toml_fields.h"
#include "core/wire_protocol.h"

namespace grace {
namespace {

// The table `name` of `root`, or an empty one when absent; fails when it is not a table.
StatusOr<const toml::table*> Table(const toml::table& root, const char* name,
                                   const std::string& source) {
  static const toml::table kEmpty;
  const toml::node* node = root.get(name);
  if (node == nullptr) return &kEmpty;
  if (!node->is_table()) return InvalidArgument(source + ": [" + name + "] must be a table");
  return node->as_table();
}

Status ParseHostPort(const TomlFields& f, const char* key, const std::string& text,
                     std::string* host, uint16_t* port) {
  const size_t colon = text.rfind(':');
  int value = -1;
  if (colon != std::string::npos && colon > 0) {
    try {
      value = std::stoi(text.substr(colon + 1));
    } catch (...) {
      value = -1;
    }
  }
  if (value < 0 || value > 65535) {
    return InvalidArgument(f.Where(key) + ": expected \"host:port\", got \"" + text + "\"");
  }
  *host = text.substr(0, colon);
  *port = static_cast<uint16_t>(value);
  return Status::Ok();
}

}  // namespace

StatusOr<AgentConfig> ParseAgentConfig(std::string_view toml_text, const std::string& source) {
  GRACE_ASSIGN_OR_RETURN(toml::table root, ParseTomlText(toml_text, source));
  AgentConfig c;
  c.source = source;
  {
    TomlFields f(root, source, "");
    GRACE_RETURN_IF_ERROR(
        f.RejectUnknown({"cluster", "agent", "transport", "model", "weights", "placement", "replay",
                         "output", "daemon", "migration"}));
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "cluster", source));
    TomlFields f(*t, source, "cluster");
    GRACE_RETURN_IF_ERROR(f.RejectUnknown({"nodes", "ranks_per_node", "slots_per_rank"}));
    GRACE_RETURN_IF_ERROR(f.Int("nodes", 1, 1, 4096, &c.topology.nodes));
    GRACE_RETURN_IF_ERROR(f.Int("ranks_per_node", 1, 1, 64, &c.topology.gpus_per_node));
    GRACE_RETURN_IF_ERROR(f.Int("slots_per_rank", 0, 1, 4096, &c.topology.slots_per_gpu, true));
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "agent", source));
    TomlFields f(*t, source, "agent");
    GRACE_RETURN_IF_ERROR(f.RejectUnknown({"first_rank", "local_ranks", "backend"}));
    GRACE_RETURN_IF_ERROR(f.Int("first_rank", 0, 0, c.topology.ranks() - 1, &c.first_rank));
    GRACE_RETURN_IF_ERROR(
        f.Int("local_ranks", 1, 1, c.topology.ranks() - c.first_rank, &c.local_ranks));
    GRACE_RETURN_IF_ERROR(f.String("backend", "cpu", &c.backend));
    if (c.backend != "cpu" && c.backend != "cuda") {
      return InvalidArgument(f.Where("backend") + ": expected \"cpu\" or \"cuda\", got \"" +
                             c.backend + "\"");
    }
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "transport", source));
    TomlFields f(*t, source, "transport");
    GRACE_RETURN_IF_ERROR(f.RejectUnknown(
        {"kind", "rendezvous", "listen_host", "connect_timeout_ms", "nccl_timeout_ms"}));
    GRACE_RETURN_IF_ERROR(f.String("kind", "tcp", &c.transport));
    if (c.transport != "tcp" && c.transport != "nccl") {
      return InvalidArgument(f.Where("kind") + ": expected \"tcp\" or \"nccl\", got \"" +
                             c.transport + "\"");
    }
    if (c.transport == "nccl" && c.backend != "cuda") {
      return InvalidArgument(f.Where("kind") + ": \"nccl\" moves device memory; it needs " +
                             "[agent].backend = \"cuda\" (backend is \"" + c.backend + "\")");
    }
    std::string rendezvous;
    GRACE_RETURN_IF_ERROR(f.String("rendezvous", "127.0.0.1:29500", &rendezvous));
    GRACE_RETURN_IF_ERROR(
        ParseHostPort(f, "rendezvous", rendezvous, &c.rendezvous_host, &c.rendezvous_port));
    GRACE_RETURN_IF_ERROR(f.String("listen_host", "127.0.0.1", &c.listen_host));
    GRACE_RETURN_IF_ERROR(f.Int("connect_timeout_ms", 30000, 100, 3600000, &c.connect_timeout_ms));
    GRACE_RETURN_IF_ERROR(f.Int("nccl_timeout_ms", 60000, 100, 3600000, &c.nccl_timeout_ms));
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "model", source));
    TomlFields f(*t, source, "model");
    GRACE_RETURN_IF_ERROR(f.RejectUnknown({"experts", "top_k", "hidden", "ffn", "layers"}));
    GRACE_RETURN_IF_ERROR(f.Int("experts", 0, 1, 65536, &c.model.num_experts, true));
    GRACE_RETURN_IF_ERROR(f.Int("top_k", 0, 1, 32, &c.model.top_k, true));
    GRACE_RETURN_IF_ERROR(f.Int("hidden", 0, 1, 65536, &c.model.hidden, true));
    GRACE_RETURN_IF_ERROR(f.Int("ffn", 0, 1, 65536, &c.model.ffn, true));
    GRACE_RETURN_IF_ERROR(f.Int("layers", 1, 1, 1024, &c.model.num_layers));
    if (c.model.top_k > c.model.num_experts) {
      return InvalidArgument(f.Where("top_k") + ": top_k " + std::to_string(c.model.top_k) +
                             " exceeds experts " + std::to_string(c.model.num_experts));
    }
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "weights", source));
    TomlFields f(*t, source, "weights");
    GRACE_RETURN_IF_ERROR(f.RejectUnknown({"seed", "file"}));
    int64_t seed = 1;
    GRACE_RETURN_IF_ERROR(f.Int("seed", int64_t{1}, int64_t{0}, INT64_MAX, &seed));
    c.weights_seed = static_cast<uint64_t>(seed);
    GRACE_RETURN_IF_ERROR(f.String("file", "", &c.weights_file));
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "placement", source));
    TomlFields f(*t, source, "placement");
    GRACE_RETURN_IF_ERROR(f.RejectUnknown({"file"}));
    GRACE_RETURN_IF_ERROR(f.String("file", "", &c.placement_file));
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "replay", source));
    TomlFields f(*t, source, "replay");
    GRACE_RETURN_IF_ERROR(
        f.RejectUnknown({"trace", "steps", "tokens_per_rank", "steps_per_second", "loop", "seed",
                         "coactivation_sample_every", "coactivation_max_pairs"}));
    GRACE_RETURN_IF_ERROR(f.String("trace", "", &c.trace_file));
    GRACE_RETURN_IF_ERROR(f.Int("steps", 0, 0, 1 << 30, &c.steps));
    GRACE_RETURN_IF_ERROR(f.Int("tokens_per_rank", 32, 1, 1 << 20, &c.tokens_per_rank));
    GRACE_RETURN_IF_ERROR(f.Double("steps_per_second", 0, 0, 1e6, &c.steps_per_second));
    GRACE_RETURN_IF_ERROR(f.Bool("loop", false, &c.loop));
    int64_t seed = 7;
    GRACE_RETURN_IF_ERROR(f.Int("seed", int64_t{7}, int64_t{0}, INT64_MAX, &seed));
    c.seed = static_cast<uint64_t>(seed);
    GRACE_RETURN_IF_ERROR(
        f.Int("coactivation_sample_every", 8, 1, 1 << 20, &c.coactivation_sample_every));
    GRACE_RETURN_IF_ERROR(f.Int("coactivation_max_pairs", 512, 1,
                                static_cast<int>(kMaxCoactivationPairsPerLayer),
                                &c.coactivation_max_pairs));
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "output", source));
    TomlFields f(*t, source, "output");
    GRACE_RETURN_IF_ERROR(f.RejectUnknown({"dir", "write_outputs"}));
    GRACE_RETURN_IF_ERROR(f.String("dir", ".", &c.output_dir));
    GRACE_RETURN_IF_ERROR(f.Bool("write_outputs", false, &c.write_outputs));
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "daemon", source));
    TomlFields f(*t, source, "daemon");
    GRACE_RETURN_IF_ERROR(
        f.RejectUnknown({"address", "cluster_secret", "agent_id", "reconnect_max_ms", "tls"}));
    GRACE_RETURN_IF_ERROR(f.String("address", "", &c.daemon_address));
    if (!c.daemon_address.empty()) {
      std::string host;
      uint16_t port = 0;
      GRACE_RETURN_IF_ERROR(ParseHostPort(f, "address", c.daemon_address, &host, &port));
    }
    GRACE_RETURN_IF_ERROR(f.String("cluster_secret", "", &c.cluster_secret));
    if (c.cluster_secret.empty()) {
      if (const char* env = std::getenv("GRACE_CLUSTER_SECRET"); env != nullptr) {
        c.cluster_secret = env;
      }
    }
    GRACE_RETURN_IF_ERROR(
        f.String("agent_id", "agent" + std::to_string(c.first_rank), &c.agent_id));
    if (c.agent_id.empty()) c.agent_id = "agent" + std::to_string(c.first_rank);
    GRACE_RETURN_IF_ERROR(f.Int("reconnect_max_ms", 2000, 10, 600000, &c.reconnect_max_ms));
    std::string tls;
    GRACE_RETURN_IF_ERROR(f.String("tls", "psk", &tls));
    StatusOr<AgentChannelTls> setting = ParseAgentChannelTls(tls);
    if (!setting.ok()) return InvalidArgument(f.Where("tls") + ": " + setting.status().message());
    c.daemon_tls = *setting;
  }
  {
    GRACE_ASSIGN_OR_RETURN(const toml::table* t, Table(root, "migration", source));
    TomlFields f(*t, source, "migration");
    GRACE_RETURN_IF_ERROR(f.RejectUnknown({"transport", "rendezvous", "chunk_bytes",
                                           "max_bytes_per_s", "step_budget", "spare_slots"}));
    GRACE_RETURN_IF_ERROR(f.String("transport", "tcp", &c.migration_transport));
    if (c.migration_transport != "tcp" && c.migration_transport != "nccl") {
      return InvalidArgument(f.Where("transport") + ": expected \"tcp\" or \"nccl\", got \"" +
                             c.migration_transport + "\"");
    }
    if (c.migration_transport == "nccl" && c.backend != "cuda") {
      return InvalidArgument(f.Where("transport") +
                             ": \"nccl\" copies expert weights device to device; it needs "
                             "[agent].backend = \"cuda\" (backend is \"" +
                             c.backend + "\")");
    }
    std::string rendezvous;
    GRACE_RETURN_IF_ERROR(f.String("rendezvous", "127.0.0.1:29600", &rendezvous));
    GRACE_RETURN_IF_ERROR(ParseHostPort(f, "rendezvous", rendezvous, &c.migration_rendezvous_host,
                                        &c.migration_rendezvous_port));
    GRACE_RETURN_IF_ERROR(f.Int("chunk_bytes", 256 << 10, 4096, 1 << 30, &c.chunk_bytes));
    GRACE_RETURN_IF_ERROR(f.Double("max_bytes_per_s", 0, 0, 1e12, &c.max_bytes_per_s));
    GRACE_RETURN_IF_ERROR(f.Double("step_budget", 1.25, 1.0, 100.0, &c.step_budget));
    // Default: as many spares as slots, so any migration stages in one round.
    GRACE_RETURN_IF_ERROR(f.Int("spare_slots", c.topology.slots_per_gpu, 0, 4096, &c.spare_slots));
  }
  GRACE_RETURN_IF_ERROR(c.model.Validate().WithContext(source));
  return c;
}

StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open the agent config");
  std::stringstream text;
  text << in.rdbuf();
  return ParseAgentConfig(text.str(), path);
}

}  // namespace grace
