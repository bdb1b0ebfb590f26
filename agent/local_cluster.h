// LocalCluster: starts grace-agent processes on this machine and waits for them, for the
// multi-process tests and `gracectl bench datapath`.
//
//   GRACE_ASSIGN_OR_RETURN(std::vector<int> codes,
//                          RunAgentProcesses(binary, {"a.toml", "b.toml"},
//                          std::chrono::seconds(60)));
//
// Processes still running at the deadline are killed (only those it started) and reported.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/status.h"

namespace grace {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
StatusOr<int> PickFreePort();

// The first of `count` consecutive TCP ports on 127.0.0.1 that were all free a moment ago,
// below the usual ephemeral range (32768 and up), so outgoing connections do not take them
// later: for the migration mesh, whose rank 0 listens on one of 8 ports per migration.
StatusOr<int> PickFreePortRange(int count);

// Exit codes, in config order; an error when one could not be started or timed out.
StatusOr<std::vector<int>> RunAgentProcesses(const std::string& agent_binary,
                                             const std::vector<std::string>& config_paths,
                                             std::chrono::milliseconds timeout);

// One grace-agent process, for tests that kill and restart agents: its pid.
StatusOr<int> StartAgentProcess(const std::string& agent_binary, const std::string& config_path);
// Its exit code (128 + signal when a signal ended it); SIGKILLed and reported at the deadline.
StatusOr<int> WaitAgentProcess(int pid, std::chrono::milliseconds timeout);
// SIGKILL, then reaps it.
void KillAgentProcess(int pid);

// grace-agent next to the running executable's build tree: $GRACE_AGENT_BINARY, else
// <exe dir>/../agent/grace-agent.
std::string FindAgentBinary();

}  // namespace grace
