// RunCommand: runs a shell command line to completion and returns its exit status with its
// stdout and stderr together, for tests of command-line tools (gracectl).
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace grace::testing {

struct CommandRun {
  int exit_code = -1;  // -1: killed by a signal or not started
  std::string out;     // stdout and stderr
};

inline CommandRun RunCommand(const std::string& command_line) {
  FILE* p = popen((command_line + " 2>&1").c_str(), "r");
  if (p == nullptr) return {};
  CommandRun run;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) run.out.append(buf.data(), n);
  const int status = pclose(p);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

}  // namespace grace::testing
