// RestorePolicy: the policy graced starts with, from its config file and the policy changes in
// its history, so that what an operator set over PUT /api/v1/policy (or pause) outlives a
// restart.
//
// Per field, the newer writer wins: the value set over the REST API since the last start, unless
// the config file's value changed since then (an edited graced.toml is a newer write). To tell,
// graced records the config file's value of a field (who = "config") when it differs from the
// one recorded at an earlier start (on the first start, or the first since this rule, the file
// wins and is recorded). Pause survives as it was left.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "daemon/history_store.h"
#include "daemon/policy_settings.h"

namespace grace {

struct RestoredPolicy {
  PolicySettings policy;
  bool paused = false;
  // One line per field whose value is not the config file's, e.g.
  // "interval_s = 2 (set by api at <ms>; graced.toml says 5)".
  std::vector<std::string> overrides;
};

StatusOr<RestoredPolicy> RestorePolicy(HistoryStore& store, const PolicySettings& from_config,
                                       int64_t now_ms);

}  // namespace grace
