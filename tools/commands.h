// gracectl's command groups. Each Add*Commands function registers its subcommands on the CLI11
// app (or on the shared `bench` subcommand) and lives in its own file next to this one.
//
// Commands return their exit status through CommandExit: 0 success, 1 a failed check, 2 bad
// input (the message names the file, line or field).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace grace::tools {

// Thrown by a command callback to end gracectl with `code` after `message` went to stderr.
struct CommandExit {
  int code = 0;
};

void AddTraceCommands(CLI::App& app,
                      CLI::App& bench);                // trace info|convert|synth; bench trace-read
void AddPlanCommands(CLI::App& app, CLI::App& bench);  // plan, simulate; bench plan
void AddDatapathCommands(CLI::App& app, CLI::App& bench);   // bench datapath
void AddMigrationCommands(CLI::App& app, CLI::App& bench);  // bench migration
void AddLiveCommands(CLI::App& app, CLI::App& bench);       // bench live
void AddExportCommands(CLI::App& app);                      // export
// status, agents, placement, history, decisions, policy get|set, replan, pause, resume: the
// client of a running graced (exit codes in tools/client_commands.cc)
void AddClientCommands(CLI::App& app);

// `gracectl simulate --online --scenario FILE [--json]` (tools/simulate_online.cc): returns the
// exit status.
int RunOnlineSimulate(const std::string& scenario_path, bool json);

}  // namespace grace::tools
