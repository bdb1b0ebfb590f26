// Scenario trace: a scenario's phases (tools/scenario.h) written out as one native token-level
// trace (core/native_trace.h), so that agents can replay a drifting workload whose sources are
// count-only, `gracectl trace from-scenario`.
//
// Each phase becomes steps x tokens_per_step tokens (both as the scenario says, or scaled and
// overridden by the options), each token with its top-k experts at every kept layer:
//  - a count-only source: every token draws top_k distinct experts per layer by the phase's
//    per-expert load, without replacement (SampleTopKTokens, policy/load_sampling.h, which also
//    says how closely the per-expert shares follow the source; options.match_shares draws by
//    corrected weights instead, which keep the shares); with the phase's `noise`, the weights
//    are jittered once per step, as in `gracectl simulate --online`. Each phase's sampling
//    is seeded by its own `seed` (mixed with options.seed when set), so phases do not depend on
//    each other and a run is reproducible;
//  - a token-level source: its tokens, replayed in order from first_token and wrapping within
//    [first_token, last_token), as the online simulation replays them.
// Gate weights and home ranks are left out (replay then weighs choices equally and places tokens
// by BlockHomeRank). The header notes which steps came from which phase.
//
// Every phase must have the same experts and top-k, and the same layers unless options.layers
// picks layers that each one has; errors are InvalidArgument naming the scenario, the phase and
// its source. One thread; the only I/O is writing `out_path`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/ids.h"
#include "core/status.h"
#include "tools/scenario.h"

namespace grace::tools {

struct ScenarioTraceOptions {
  std::vector<LayerId> layers;   // the model layer ids to keep; empty: all the sources have
  int max_layers = 0;            // > 0 (without `layers`): that many, spread evenly, first and last
  double steps_scale = 1.0;      // each phase's steps times this, rounded, at least 1
  int tokens_per_step = 0;       // > 0: replaces every phase's tokens_per_step
  std::optional<uint64_t> seed;  // mixed into every phase's seed
  // Count-only sources: draw by MatchTopKShares's weights rather than by the shares themselves,
  // so that each expert's sampled share follows the source's (up to 0.995 / top_k) instead of
  // being flattened at the top (policy/load_sampling.h).
  bool match_shares = false;
};

// What one phase contributed, reported as soon as it is written.
struct ScenarioPhaseReport {
  int phase = 0;       // 1-based, as in the scenario's messages
  std::string source;  // as the scenario names it
  bool token_level = false;
  int64_t first_step = 0;  // in the written trace
  int steps = 0;
  int tokens_per_step = 0;
  // Count-only: per kept layer, the L1 distance between the sampled per-expert shares (over the
  // whole phase) and the source's shares, in [0, 2]; empty for token-level phases.
  std::vector<double> share_l1;
  // Token-level: the replayed window [window_begin, window_end) of the source's tokens.
  int64_t window_begin = 0;
  int64_t window_end = 0;
  double seconds = 0;  // to sample (or copy) and write the phase
};

struct ScenarioTraceSummary {
  int64_t steps = 0;
  int64_t tokens = 0;
  std::vector<LayerId> layer_ids;
  int num_experts = 0;
  int top_k = 0;
  uint64_t bytes = 0;  // of the written file
  std::vector<ScenarioPhaseReport> phases;
};

// Writes `scenario` as a native token-level trace at `out_path`, calling `on_phase` (when set)
// after each phase.
StatusOr<ScenarioTraceSummary> WriteScenarioTrace(
    const Scenario& scenario, const ScenarioTraceOptions& options, const std::string& out_path,
    const std::function<void(const ScenarioPhaseReport&)>& on_phase = {});

}  // namespace grace::tools
