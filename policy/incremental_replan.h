// IncrementalReplan: a minimum-move re-plan of one layer. Starting from the current placement
// row, it changes one thing at a time (a swap of two experts between GPUs, or a spare slot
// re-assigned to another expert's new replica), each move chosen on the real cost model by its
// modeled gain over the horizon per expert copied, and stops when the next move's gain no longer
// pays for the transfer time it adds. Planning from scratch relabels most slots of a layer even
// when a few moves would capture most of the gain; this keeps the slots that do not need to move.
//
// Moves come from three sources: steps toward a target row (typically the placement policy's
// plan of the forecast, aligned to the current row: AlignRowToCurrent), swaps that unload the
// most loaded GPU, and new replicas of the experts with the highest load per replica on the
// least loaded GPUs. Each round evaluates a bounded number of them exactly: first those that
// even the GPUs' compute most on a cheap proxy (each moved copy carrying its slot's load under
// the current routing), as many as compute's share of the layer time, then the best of each
// source by its own proxy. A guided search (IncrementalReplanOptions::guided) climbs past the
// plateaus of the layer time.
//
//   IncrementalReplanOptions options;  // horizon, bytes, budget
//   std::vector<IncrementalStep> steps = IncrementalReplan(current, target, forecast, topology,
//                                                          params, options);
//   // steps[i].row: the row after i + 1 moves; the caller scores the prefixes it wants.
//
// Pure function, safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/ids.h"
#include "core/topology.h"
#include "policy/cost_model.h"
#include "policy/layer_stats.h"

namespace grace {

struct IncrementalReplanOptions {
  int horizon_steps = 64;           // steps a move's gain per step is counted over
  uint64_t expert_bytes = 1;        // weights of one expert
  uint64_t byte_budget = 0;         // total bytes the moves may copy; 0: no limit
  double gain_to_cost_ratio = 1.0;  // a move must gain this multiple of the transfer it adds
  int max_moves = 32;
  int evaluations_per_round = 32;   // exact cost-model evaluations per move chosen
  int max_replicas_per_expert = 0;  // no move adds a copy beyond it; 0: no cap
  // Guided: moves are chosen (and must pay) on the layer time plus the compute of the next
  // hottest GPUs, the i-th weighted 2^-i, and swaps come off the three hottest GPUs, not the
  // hottest alone. The time is the hottest GPU's; when several are about as hot no single move
  // lowers it, and the unguided search stops on that plateau. Steps still report the real time.
  bool guided = false;
};

struct IncrementalStep {
  std::vector<ExpertId> row;  // the row after this move and every one before it
  double step_ms = 0;         // modeled layer time of `row` on the forecast
  double transfer_ms = 0;     // copy time from the current row to `row` (no fixed cost)
  uint64_t bytes = 0;         // copied from the current row to `row`
  std::string move;           // what this move did, for the decision record
};

// The moves from `current` (a placement row) for `forecast`; `target` (same length, or empty)
// suggests where slots should go. Every row keeps each expert on at least one slot and never
// holds an expert twice on one GPU. Empty when no move pays.
std::vector<IncrementalStep> IncrementalReplan(std::span<const ExpertId> current,
                                               std::span<const ExpertId> target,
                                               const LayerStats& forecast, const Topology& topology,
                                               const CostParams& params,
                                               const IncrementalReplanOptions& options);

// The other direction: starts from `target` and undoes its changes one at a time (moves toward
// `current`, plus the same load-driven swaps and replicas), each chosen by the transfer time it
// saves against the gain it gives up, while that pays. Finds placements where several moves only
// gain together (a regrouping), which IncrementalReplan's one-move-at-a-time search cannot reach.
// The result's `move` says how many changes were undone; nullopt when `target` is unusable.
std::optional<IncrementalStep> PruneReplan(std::span<const ExpertId> current,
                                           std::span<const ExpertId> target,
                                           const LayerStats& forecast, const Topology& topology,
                                           const CostParams& params,
                                           const IncrementalReplanOptions& options);

}  // namespace grace
