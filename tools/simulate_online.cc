#include <iostream>

#include "tools/commands.h"

namespace grace::tools {

// Replaced by the forecasting/decision issue.
int RunOnlineSimulate(const std::string& scenario_path, bool /*json*/) {
  std::cerr << "gracectl simulate --online: not built yet (scenario " << scenario_path << ")\n";
  return 2;
}

}  // namespace grace::tools
