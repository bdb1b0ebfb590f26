#include "tools/commands.h"

namespace grace::tools {

// Filled in by the issue that builds these commands.
void AddPlanCommands(CLI::App& /*app*/, CLI::App& /*bench*/) {}

}  // namespace grace::tools
