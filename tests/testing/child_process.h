// ChildProcess: a program started by a test or a benchmark, with its output in a log file, that
// the caller can SIGKILL or stop with SIGTERM. The child inherits no descriptor but 0, 1 and 2.
// The destructor kills what is still running, so a failing test never leaves processes behind.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace grace::testing {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { Kill(SIGKILL); }

  // Starts `argv[0]` with `argv` and extra environment entries ("KEY=value"); stdout and stderr
  // go to `log_path`. Returns false if fork failed.
  bool Start(const std::vector<std::string>& argv, const std::vector<std::string>& env,
             const std::string& log_path) {
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      // Only stdin, stdout and stderr cross: a socket of the parent's (a proxy's connection)
      // left open in the child would keep that connection alive after the parent closed it.
      ::close_range(3, ~0U, 0);
      for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    return true;
  }

  // Sends `signal` and reaps the process; returns its wait status (or -1 when none ran).
  int Kill(int signal) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  // SIGTERM, up to `grace` for a clean exit, then SIGKILL: a bounded stop.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(5)) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!Running()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Kill(SIGKILL);
  }

  pid_t pid() const { return pid_; }

  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace grace::testing
