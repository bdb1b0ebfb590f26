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

// Exit codes, in config order; an error when one could not be started or timed out.
StatusOr<std::vector<int>> RunAgentProcesses(const std::string& agent_binary,
                                             const std::vector<std::string>& config_paths,
                                             std::chrono::milliseconds timeout);

// grace-agent next to the running executable's build tree: $GRACE_AGENT_BINARY, else
// <exe dir>/../agent/grace-agent.
std::string FindAgentBinary();

}  // namespace grace
