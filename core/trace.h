// The trace model: expert routing recorded from (or synthesised for) an MoE model, the input of
// planning, simulation and replay.
//
// A trace is a sequence of steps over a fixed set of MoE layers. A step is either
//  - token-level (kTokens): per layer, each token's top-k expert ids (and optionally gate
//    weights), plus each token's home rank (the rank that holds it before dispatch); or
//  - count-only (kCounts): per layer, per expert, how many (token, expert) assignments there
//    were, optionally with a within-layer co-activation matrix.
// Importers (core/trace_import.h) build Trace values from the real formats; the native format
// (core/native_trace.h) stores them for streamed replay. Plain values, no I/O here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/ids.h"
#include "core/status.h"

namespace grace {

enum class TraceKind : uint8_t { kTokens = 0, kCounts = 1 };
const char* TraceKindName(TraceKind kind);

// Tokens without a recorded home rank are assigned to ranks in consecutive blocks, round-robin
// (DESIGN.md, "Traces"): tokens [0, block) on rank 0, [block, 2 block) on rank 1, ...
inline constexpr int kDefaultHomeRankBlock = 16;
inline RankId BlockHomeRank(int64_t token_index, int ranks, int block = kDefaultHomeRankBlock) {
  return static_cast<RankId>((token_index / block) % ranks);
}

struct TokenBatch {
  int num_tokens = 0;
  // Per token; empty means "not recorded": use BlockHomeRank on the token's index in the trace.
  std::vector<RankId> home_rank;
  // [layer index][token][k], num_layers * num_tokens * top_k ids.
  std::vector<ExpertId> expert_ids;
  // Same shape as expert_ids, or empty when the source has no gate weights.
  std::vector<float> gate_weights;
};

struct CountBatch {
  // [layer index][expert] assignments (double: the real sources reach 3e10 and some are rates).
  std::vector<double> counts;
  // [layer index][expert a][expert b] co-activation counts, or empty.
  std::vector<double> coactivation;
};

struct TraceStep {
  TraceKind kind = TraceKind::kTokens;
  TokenBatch tokens;  // when kind == kTokens
  CountBatch counts;  // when kind == kCounts
};

// Slot-aligned cross-layer co-activation: matrix[a * E + b] counts tokens whose i-th choice was
// expert a at from_layer and whose i-th choice was b at to_layer.
struct CrossLayerCounts {
  LayerId from_layer = 0;
  LayerId to_layer = 0;
  std::vector<double> matrix;
};

struct TraceInfo {
  std::string format;  // importer name, e.g. "vllm-jsonl", "sglang-logical-count", "native"
  std::string model;   // when the source names it
  std::string domain;  // workload label when the source has one (arxiv, gsm8k, ...)
  TraceKind kind = TraceKind::kTokens;
  int num_experts = 0;
  int top_k = 0;  // 0 when unknown (some count-only sources)
  std::vector<LayerId> layer_ids;
  std::vector<std::string> sources;  // files it was read from

  int num_layers() const { return static_cast<int>(layer_ids.size()); }
};

// Records an importer skipped, and why ("8448 records: constant leading profiling run").
struct DroppedRecords {
  int64_t count = 0;
  std::string reason;
};

struct Trace {
  TraceInfo info;
  std::vector<TraceStep> steps;
  std::vector<CrossLayerCounts> cross_layer;
  std::vector<DroppedRecords> dropped;
  std::vector<std::string> notes;  // facts worth reporting that are not errors

  // Per layer, per expert load summed over all steps: [layer index][expert].
  std::vector<std::vector<double>> LayerLoads() const;
  // Total tokens over token-level steps (0 for count-only traces).
  int64_t TotalTokens() const;
};

// The token-level steps of `trace` cut again into steps of `tokens_per_step` tokens (the last may
// be shorter), in order, keeping every token's experts, gate weights and recorded home rank:
// recorded steps are whatever the recorder flushed (a whole request, thousands of tokens), a
// replay wants steps of serving size. InvalidArgument for count steps or tokens_per_step < 1.
Status RechunkTokenSteps(int tokens_per_step, Trace* trace);

}  // namespace grace
