// graced: grace's central daemon. Reads graced.toml (flags override it), restores its state from
// the SQLite store in --state-dir, accepts agents, serves the REST API, metrics and the web UI,
// and runs the control loop until SIGINT or SIGTERM. Under systemd (Type=notify) it reports
// READY=1 once it listens and STOPPING=1 when it shuts down.
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "daemon/agent_server.h"
#include "daemon/control_loop.h"
#include "daemon/daemon_config.h"
#include "daemon/rest_api.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) {
  g_stop = true;
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int Fail(const grace::Status& s) {
  spdlog::error("{}", s.message());
  return 2;
}

// The descriptors graced may hold (HTTP connections, strangers on the agent port, agents,
// SQLite) fit the hard limit, not always the soft one (often 1024); systemd sets both
// (LimitNOFILE in graced.service), elsewhere the soft limit is raised here.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  const rlim_t was = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("graced: cannot raise the open-file limit from {}: {}", was, std::strerror(errno));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"graced: grace's control-plane daemon"};
  app.set_version_flag("--version", "graced " GRACE_VERSION);
  std::string config_path, http, agents, state_dir;
  app.add_option("--config", config_path, "graced.toml (defaults apply without it)");
  app.add_option("--http", http, "REST/UI address HOST:PORT (default 127.0.0.1:8750)");
  app.add_option("--agents", agents, "agent address HOST:PORT (default 127.0.0.1:8751)");
  app.add_option("--state-dir", state_dir,
                 "directory of the SQLite history (default /var/lib/grace)");
  std::string backup_to, restore_from;
  app.add_option("--backup", backup_to,
                 "copy the history (state-dir/grace.db) to FILE, consistent while graced runs, "
                 "and exit");
  app.add_option("--restore", restore_from,
                 "replace state-dir/grace.db by the backup FILE (stop graced first) and exit");
  CLI11_PARSE(app, argc, argv);
  RaiseDescriptorLimit();

  std::string text;
  if (!config_path.empty()) {
    // A directory opens as an empty stream and would run graced on every default.
    std::error_code ec;
    if (!std::filesystem::is_regular_file(config_path, ec)) {
      return Fail(grace::InvalidArgument("--config " + config_path + ": not a regular file"));
    }
    std::ifstream in(config_path);
    if (!in) return Fail(grace::NotFound("cannot read config " + config_path));
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto config = grace::ParseDaemonConfig(text, config_path.empty() ? "defaults" : config_path);
  if (!config.ok()) return Fail(config.status());
  // A web_root that is something else than a directory is a mistake; one that does not exist
  // (an install without the UI built) only means no UI.
  if (std::error_code ec; !config->web_root.empty()) {
    if (!std::filesystem::exists(config->web_root, ec)) {
      spdlog::warn("graced: [daemon].web_root {} does not exist: no web UI", config->web_root);
      config->web_root.clear();
    } else if (!std::filesystem::is_directory(config->web_root, ec)) {
      return Fail(
          grace::InvalidArgument("[daemon].web_root " + config->web_root + ": not a directory"));
    }
  }
  if (!http.empty()) {
    grace::Status s = grace::ParseHostPort(http, "--http", &config->http_host, &config->http_port);
    if (!s.ok()) return Fail(s);
  }
  if (!agents.empty()) {
    grace::Status s =
        grace::ParseHostPort(agents, "--agents", &config->agents_host, &config->agents_port);
    if (!s.ok()) return Fail(s);
  }
  if (!state_dir.empty()) config->state_dir = state_dir;
  if (!backup_to.empty() || !restore_from.empty()) {
    const std::string db = config->state_dir + "/grace.db";
    const std::string& from = backup_to.empty() ? restore_from : db;
    const std::string& to = backup_to.empty() ? db : backup_to;
    if (grace::Status s = grace::CopyHistoryDatabase(from, to); !s.ok()) return Fail(s);
    spdlog::info("graced: copied the history {} to {}", from, to);
    return 0;
  }
  if (grace::Status s = grace::CheckHttpTransport(*config); !s.ok()) return Fail(s);
  if (config->http_tls_cert_file.empty() && !grace::IsLoopbackHost(config->http_host)) {
    spdlog::warn("graced: the REST API on {} is plaintext ([http].allow_plaintext = true)",
                 config->http_host);
  }
  if (const char* t = std::getenv("GRACE_API_TOKEN"); t != nullptr && *t) config->api_token = t;
  if (const char* s = std::getenv("GRACE_CLUSTER_SECRET"); s != nullptr && *s) {
    config->cluster_secret = s;
  }
  if (config->cluster_secret.empty()) {
    return Fail(
        grace::InvalidArgument("no cluster secret: set [daemon].cluster_secret or "
                               "GRACE_CLUSTER_SECRET (agents prove it)"));
  }
  if (config->api_token.empty()) {
    spdlog::warn(
        "no API token ([daemon].api_token or GRACE_API_TOKEN): mutating REST calls will be "
        "refused");
  }
  std::error_code ec;
  std::filesystem::create_directories(config->state_dir, ec);
  const std::string db_path = config->state_dir + "/grace.db";
  auto store = grace::OpenSqliteHistoryStore(db_path);
  if (!store.ok()) return Fail(store.status());

  grace::ControlLoop loop(*config, std::move(store).value(), WallMs);
  if (grace::Status s = loop.Init(); !s.ok()) return Fail(s);

  grace::AgentServerOptions agent_opt;
  agent_opt.host = config->agents_host;
  agent_opt.port = config->agents_port;
  agent_opt.cluster_secret = config->cluster_secret;
  agent_opt.tls = config->agents_tls;
  if (config->agents_tls == grace::AgentChannelTls::kOff) {
    spdlog::warn(
        "graced: [agents] tls = \"off\": agent frames cross the network in plaintext, and a "
        "frame injected on the path is taken as the agent's");
  }
  agent_opt.heartbeat_ms = config->heartbeat_ms;
  agent_opt.report_ms = config->report_ms;
  agent_opt.lost_after_ms = config->lost_after_ms;
  agent_opt.max_frame_bytes = config->max_frame_mb << 20;
  // A Hello carries the agent's placement: room for every slot's expert id as JSON.
  const uint64_t slots = static_cast<uint64_t>(config->topology.ranks()) *
                         config->topology.slots_per_gpu * config->model.layer_ids.size();
  agent_opt.max_handshake_frame_bytes = static_cast<uint32_t>(std::min<uint64_t>(
      agent_opt.max_frame_bytes, std::max<uint64_t>(16 * 1024, 4096 + 8 * slots)));
  grace::AgentServer agent_server(loop, agent_opt);
  loop.SetSender([&agent_server](const std::string& id,
                                 const grace::WireMessage& m) { return agent_server.Send(id, m); },
                 [&agent_server] { return agent_server.Agents(); });
  if (grace::Status s = agent_server.Start(); !s.ok()) return Fail(s);

  grace::RestApiOptions rest_opt;
  rest_opt.host = config->http_host;
  rest_opt.port = config->http_port;
  rest_opt.api_token = config->api_token;
  rest_opt.web_root = config->web_root;
  rest_opt.tls_cert_file = config->http_tls_cert_file;
  rest_opt.tls_key_file = config->http_tls_key_file;
  for (const char* dir : {GRACE_WEB_STAGE_DIR, GRACE_WEB_INSTALL_DIR}) {
    if (!rest_opt.web_root.empty()) break;
    if (std::filesystem::is_regular_file(std::filesystem::path(dir) / "index.html")) {
      rest_opt.web_root = dir;
    }
  }
  if (rest_opt.web_root.empty()) spdlog::warn("graced: no web UI found; set daemon.web_root");
  grace::RestApi rest(loop, rest_opt);
  if (grace::Status s = rest.Start(); !s.ok()) return Fail(s);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  spdlog::info("graced: epoch {}, REST and UI on {}://{}:{}/, agents on {}:{}, state in {}",
               loop.epoch(), rest.tls() ? "https" : "http", config->http_host, rest.port(),
               config->agents_host, agent_server.port(), db_path);
  sd_notify(0, "READY=1");
  // The control rounds run on their own thread, so that a stop does not wait for a round that
  // takes long (a re-plan of a large topology): the round gets kShutdownGraceMs to finish.
  std::atomic<bool> round_done{false};
  std::thread control([&] {
    while (!g_stop) {
      loop.Tick();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    round_done = true;
  });
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  sd_notify(0, "STOPPING=1");
  spdlog::info("graced: stopping");
  rest.Stop();
  agent_server.Stop();
  constexpr int kShutdownGraceMs = 5000;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kShutdownGraceMs);
  while (!round_done && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!round_done) {
    // Nothing of an unfinished round is committed (an epoch is written in one transaction when
    // its migration commits), so leaving it is what a SIGKILL would do, minus the wait.
    spdlog::warn("graced: a control round is still running after {} ms; exiting without it",
                 kShutdownGraceMs);
    spdlog::shutdown();
    std::_Exit(0);
  }
  control.join();
  return 0;
}
