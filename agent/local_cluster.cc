#include "agent/local_cluster.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

extern char** environ;

namespace grace {

StatusOr<int> PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Unavailable(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string err = std::strerror(errno);
    close(fd);
    return Unavailable("bind 127.0.0.1:0: " + err);
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

StatusOr<int> PickFreePortRange(int count) {
  std::mt19937 rng(
      static_cast<uint32_t>(getpid()) * 2654435761u ^
      static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int base = 20000 + static_cast<int>(rng() % (32000 - 20000 - count));
    bool all_free = true;
    for (int p = base; p < base + count && all_free; ++p) {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (fd < 0) return Unavailable(std::string("socket: ") + std::strerror(errno));
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(p));
      all_free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      close(fd);
    }
    if (all_free) return base;
  }
  return Unavailable("no " + std::to_string(count) + " consecutive free ports in 20000-32000");
}

StatusOr<std::vector<int>> RunAgentProcesses(const std::string& agent_binary,
                                             const std::vector<std::string>& config_paths,
                                             std::chrono::milliseconds timeout) {
  std::vector<pid_t> pids;
  auto kill_started = [&] {
    for (pid_t p : pids) {
      if (p > 0) kill(p, SIGKILL);
    }
    for (pid_t p : pids) {
      if (p > 0) waitpid(p, nullptr, 0);
    }
  };
  for (const std::string& config : config_paths) {
    StatusOr<int> pid = StartAgentProcess(agent_binary, config);
    if (!pid.ok()) {
      kill_started();
      return pid.status();
    }
    pids.push_back(*pid);
  }
  std::vector<int> codes(pids.size(), -1);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t left = pids.size();
  while (left > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (pids[i] <= 0) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pids[i] = 0;
        --left;
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill_started();
      return DeadlineExceeded("grace-agent processes still running after " +
                              std::to_string(timeout.count()) + " ms; killed");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return codes;
}

StatusOr<int> StartAgentProcess(const std::string& agent_binary, const std::string& config_path) {
  std::vector<std::string> args = {agent_binary, "--config", config_path};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The agent gets stdin, stdout and stderr only. An inherited socket (a listener or a
  // connection of the parent's) would stay open in the agent after the parent closed it, and
  // its peer would never see the close.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, agent_binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Unavailable("cannot start " + agent_binary + ": " + std::strerror(rc));
  return static_cast<int>(pid);
}

StatusOr<int> WaitAgentProcess(int pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      KillAgentProcess(pid);
      return DeadlineExceeded("grace-agent pid " + std::to_string(pid) + " still running after " +
                              std::to_string(timeout.count()) + " ms; killed");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void KillAgentProcess(int pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

std::string FindAgentBinary() {
  if (const char* env = std::getenv("GRACE_AGENT_BINARY"); env != nullptr && *env != '\0') {
    return env;
  }
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "grace-agent";
  return (exe.parent_path() / ".." / "agent" / "grace-agent").lexically_normal().string();
}

}  // namespace grace
