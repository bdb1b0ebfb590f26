#include "daemon/daemon_config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include "core/toml_fields.h"

namespace grace {

Status ParseHostPort(const std::string& text, const std::string& flag, std::string* host,
                     int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgument(flag + ": expected HOST:PORT, got '" + text + "'");
  }
  int p = -1;
  const char* begin = text.data() + colon + 1;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, p);
  if (ec != std::errc() || ptr != end || p < 0 || p > 65535) {
    return InvalidArgument(flag + ": port must be 0-65535, got '" + text.substr(colon + 1) + "'");
  }
  *host = text.substr(0, colon);
  *port = p;
  return Status::Ok();
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  const std::string bare = host.size() > 2 && host.front() == '[' && host.back() == ']'
                               ? host.substr(1, host.size() - 2)
                               : host;
  return ::inet_pton(AF_INET6, bare.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

Status CheckHttpTransport(const DaemonConfig& c) {
  const bool cert = !c.http_tls_cert_file.empty();
  const bool key = !c.http_tls_key_file.empty();
  if (cert != key) {
    return InvalidArgument(std::string("[http].") + (cert ? "tls_key_file" : "tls_cert_file") +
                           ": TLS needs both tls_cert_file and tls_key_file");
  }
  if (cert || c.http_allow_plaintext || IsLoopbackHost(c.http_host)) return Status::Ok();
  return InvalidArgument(
      "[http].tls_cert_file: the REST API listens on " + c.http_host + ":" +
      std::to_string(c.http_port) +
      ", off loopback, without TLS: set [http].tls_cert_file and tls_key_file (PEM), or "
      "[http].allow_plaintext = true when something else encrypts the traffic");
}

namespace {

Status ParseHttpTable(const toml::table& t, const std::string& source, DaemonConfig* c) {
  TomlFields f(t, source, "http");
  GRACE_RETURN_IF_ERROR(f.RejectUnknown({"tls_cert_file", "tls_key_file", "allow_plaintext"}));
  GRACE_RETURN_IF_ERROR(f.String("tls_cert_file", "", &c->http_tls_cert_file));
  GRACE_RETURN_IF_ERROR(f.String("tls_key_file", "", &c->http_tls_key_file));
  GRACE_RETURN_IF_ERROR(f.Bool("allow_plaintext", false, &c->http_allow_plaintext));
  return Status::Ok();
}

Status ParseDaemonTable(const toml::table& t, const std::string& source, DaemonConfig* c) {
  TomlFields f(t, source, "daemon");
  GRACE_RETURN_IF_ERROR(f.RejectUnknown({"http", "agents", "state_dir", "web_root",
                                         "initial_placement", "api_token", "cluster_secret"}));
  std::string http, agents;
  GRACE_RETURN_IF_ERROR(f.String("http", "", &http));
  GRACE_RETURN_IF_ERROR(f.String("agents", "", &agents));
  if (!http.empty()) {
    GRACE_RETURN_IF_ERROR(ParseHostPort(http, f.Where("http"), &c->http_host, &c->http_port));
  }
  if (!agents.empty()) {
    GRACE_RETURN_IF_ERROR(
        ParseHostPort(agents, f.Where("agents"), &c->agents_host, &c->agents_port));
  }
  GRACE_RETURN_IF_ERROR(f.String("state_dir", c->state_dir, &c->state_dir));
  GRACE_RETURN_IF_ERROR(f.String("web_root", c->web_root, &c->web_root));
  GRACE_RETURN_IF_ERROR(f.String("initial_placement", c->initial_placement, &c->initial_placement));
  GRACE_RETURN_IF_ERROR(f.String("api_token", c->api_token, &c->api_token));
  GRACE_RETURN_IF_ERROR(f.String("cluster_secret", c->cluster_secret, &c->cluster_secret));
  return Status::Ok();
}

Status ParseAgentsTable(const toml::table& t, const std::string& source, DaemonConfig* c) {
  TomlFields f(t, source, "agents");
  GRACE_RETURN_IF_ERROR(
      f.RejectUnknown({"heartbeat_ms", "report_ms", "lost_after_ms", "max_frame_mb",
                       "ready_timeout_ms", "switch_timeout_ms", "tls"}));
  int v = 0;
  GRACE_RETURN_IF_ERROR(f.Int("heartbeat_ms", static_cast<int>(c->heartbeat_ms), 10, 60000, &v));
  c->heartbeat_ms = v;
  GRACE_RETURN_IF_ERROR(f.Int("report_ms", static_cast<int>(c->report_ms), 10, 600000, &v));
  c->report_ms = v;
  GRACE_RETURN_IF_ERROR(
      f.Int("lost_after_ms", static_cast<int>(c->lost_after_ms), 100, 3600000, &v));
  c->lost_after_ms = v;
  GRACE_RETURN_IF_ERROR(f.Int("max_frame_mb", static_cast<int>(c->max_frame_mb), 1, 1024, &v));
  c->max_frame_mb = v;
  GRACE_RETURN_IF_ERROR(
      f.Int("ready_timeout_ms", static_cast<int>(c->ready_timeout_ms), 100, 3600000, &v));
  c->ready_timeout_ms = v;
  GRACE_RETURN_IF_ERROR(
      f.Int("switch_timeout_ms", static_cast<int>(c->switch_timeout_ms), 100, 3600000, &v));
  c->switch_timeout_ms = v;
  std::string tls;
  GRACE_RETURN_IF_ERROR(f.String("tls", AgentChannelTlsName(c->agents_tls), &tls));
  StatusOr<AgentChannelTls> setting = ParseAgentChannelTls(tls);
  if (!setting.ok()) return InvalidArgument(f.Where("tls") + ": " + setting.status().message());
  c->agents_tls = *setting;
  if (c->lost_after_ms <= c->heartbeat_ms) {
    return InvalidArgument(f.Where("lost_after_ms") + ": must exceed heartbeat_ms (" +
                           std::to_string(c->heartbeat_ms) + ")");
  }
  return Status::Ok();
}

Status ParseModelTable(const toml::table& t, const std::string& source, ServedModel* m) {
  TomlFields f(t, source, "model");
  GRACE_RETURN_IF_ERROR(
      f.RejectUnknown({"num_experts", "top_k", "layers", "hidden", "expert_ffn"}));
  GRACE_RETURN_IF_ERROR(f.Int("num_experts", m->num_experts, 1, 65535, &m->num_experts));
  GRACE_RETURN_IF_ERROR(f.Int("top_k", m->top_k, 1, 64, &m->top_k));
  GRACE_RETURN_IF_ERROR(f.Int("hidden", m->hidden, 1, 1 << 16, &m->hidden));
  GRACE_RETURN_IF_ERROR(f.Int("expert_ffn", m->expert_ffn, 1, 1 << 16, &m->expert_ffn));
  if (m->top_k > m->num_experts) {
    return InvalidArgument(f.Where("top_k") + ": larger than num_experts");
  }
  if (const toml::node* layers = t.get("layers")) {
    const toml::array* arr = layers->as_array();
    if (arr == nullptr || arr->empty()) {
      return InvalidArgument(f.Where("layers") + ": expected a non-empty array of layer ids");
    }
    m->layer_ids.clear();
    for (const toml::node& n : *arr) {
      if (!n.is_integer()) return InvalidArgument(f.Where("layers") + ": layer ids are integers");
      const int64_t id = *n.value<int64_t>();
      if (id < 0 || id > (1 << 20)) {
        return InvalidArgument(f.Where("layers") + ": layer id " + std::to_string(id) +
                               " is out of range [0, 1048576]");
      }
      if (std::find(m->layer_ids.begin(), m->layer_ids.end(), id) != m->layer_ids.end()) {
        return InvalidArgument(f.Where("layers") + ": layer id " + std::to_string(id) +
                               " is listed twice");
      }
      m->layer_ids.push_back(static_cast<LayerId>(id));
    }
  }
  return Status::Ok();
}

Status ParsePolicyTable(const toml::table& t, const std::string& source, PolicySettings* p) {
  // The REST validator is the one definition of the policy's fields and ranges.
  nlohmann::json patch = nlohmann::json::object();
  for (const auto& [key, node] : t) {
    if (node.is_string()) {
      patch[std::string(key.str())] = *node.value<std::string>();
    } else if (node.is_integer()) {
      patch[std::string(key.str())] = *node.value<int64_t>();
    } else if (node.is_number()) {
      patch[std::string(key.str())] = *node.value<double>();
    } else {
      return InvalidArgument(TomlFields(t, source, "policy").Where(key.str()) +
                             ": expected a number or a string");
    }
  }
  StatusOr<PolicySettings> applied = ApplyPolicyPatch(*p, patch);
  if (!applied.ok()) return applied.status().WithContext(source);
  *p = *applied;
  return Status::Ok();
}

}  // namespace

StatusOr<DaemonConfig> ParseDaemonConfig(std::string_view toml_text, const std::string& source) {
  GRACE_ASSIGN_OR_RETURN(toml::table root, ParseTomlText(toml_text, source));
  DaemonConfig c;
  for (const auto& [key, node] : root) {
    const std::string k(key.str());
    if (k != "daemon" && k != "http" && k != "agents" && k != "topology" && k != "model" &&
        k != "policy") {
      return InvalidArgument(source + ": unknown table [" + k + "] (line " +
                             std::to_string(node.source().begin.line) +
                             "; known: daemon, http, agents, topology, model, policy)");
    }
    if (!node.is_table()) return InvalidArgument(source + ": '" + k + "' must be a table");
  }
  if (const toml::table* t = root["daemon"].as_table()) {
    GRACE_RETURN_IF_ERROR(ParseDaemonTable(*t, source, &c));
  }
  if (const toml::table* t = root["http"].as_table()) {
    GRACE_RETURN_IF_ERROR(ParseHttpTable(*t, source, &c));
  }
  if (const toml::table* t = root["agents"].as_table()) {
    GRACE_RETURN_IF_ERROR(ParseAgentsTable(*t, source, &c));
  }
  if (root["topology"].as_table() != nullptr) {
    GRACE_ASSIGN_OR_RETURN(c.topology, ParseTopologyToml(toml_text, source));
  }
  if (const toml::table* t = root["model"].as_table()) {
    GRACE_RETURN_IF_ERROR(ParseModelTable(*t, source, &c.model));
  }
  if (const toml::table* t = root["policy"].as_table()) {
    GRACE_RETURN_IF_ERROR(ParsePolicyTable(*t, source, &c.policy));
  }
  if (c.topology.total_slots() < c.model.num_experts) {
    return InvalidArgument(source + ": the topology has " +
                           std::to_string(c.topology.total_slots()) + " slots for " +
                           std::to_string(c.model.num_experts) + " experts");
  }
  return c;
}

}  // namespace grace
