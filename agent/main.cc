// grace-agent: runs one node's MoE data path (agent/replay.h) from agent.toml.
//
//   grace-agent --config agent.toml
//
// Exit status: 0 done, 1 a runtime failure, 2 a bad config (the message names the key or
// tensor at fault). Under systemd (Type=notify) it reports READY=1 once every local rank has
// joined the data-path mesh and STOPPING=1 when the replay ends. SIGTERM (or SIGINT) ends it
// cleanly: every local rank finishes its step, the last load report and a Goodbye go to
// graced (which marks the agent "left", not lost), exit status 0; a restarted agent resumes
// at the first step it has not written.
#include <systemd/sd-daemon.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "agent/agent_config.h"
#include "agent/replay.h"

namespace {
std::atomic<bool> g_stop{false};
void OnStopSignal(int) {
  g_stop.store(true);
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"grace-agent: the MoE data path of one node"};
  std::string config_path;
  app.add_option("--config", config_path, "agent.toml (see config/agent.example.toml)")->required();
  CLI11_PARSE(app, argc, argv);
  auto config = grace::LoadAgentConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "grace-agent: %s\n", config.status().ToString().c_str());
    return 2;
  }
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  grace::Status s = grace::RunAgent(
      *config, [] { sd_notify(0, "READY=1"); }, &g_stop);
  sd_notify(0, "STOPPING=1");
  if (!s.ok()) {
    std::fprintf(stderr, "grace-agent: %s\n", s.ToString().c_str());
    return s.code() == grace::StatusCode::kInvalidArgument ||
                   s.code() == grace::StatusCode::kNotFound
               ? 2
               : 1;
  }
  return 0;
}
