// gracectl: grace's command line. Offline tools (traces, planning, simulation, benchmarks) that
// need no daemon, and later the REST client of graced.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"gracectl: plan, simulate and operate grace's MoE expert placement"};
  app.set_version_flag("--version", "gracectl " GRACE_VERSION);
  app.require_subcommand(1);
  CLI::App* bench = app.add_subcommand("bench", "measure grace's figures (see bench/)");
  bench->require_subcommand(1);
  grace::tools::AddTraceCommands(app, *bench);
  grace::tools::AddPlanCommands(app, *bench);
  grace::tools::AddDatapathCommands(app, *bench);
  grace::tools::AddMigrationCommands(app, *bench);
  grace::tools::AddLiveCommands(app, *bench);
  grace::tools::AddExportCommands(app);
  grace::tools::AddClientCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;  // usage errors are bad input
  } catch (const grace::tools::CommandExit& e) {
    std::fflush(stdout);
    return e.code;
  } catch (const std::bad_alloc&) {
    // A size no check caught: still a message and bad input, never an abort.
    std::fflush(stdout);
    std::fprintf(stderr,
                 "gracectl: out of memory: the input asks for more than this machine has\n");
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "gracectl: %s\n", e.what());
    return 2;
  }
  return 0;
}
