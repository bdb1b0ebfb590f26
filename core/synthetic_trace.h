// SynthesizeTrace: a token-level trace drawn from a seeded model of MoE routing, grace's default
// input when no recorded trace is at hand, and the source of large traces for benchmarks.
//
// The model, per layer:
//  - popularity: expert at popularity rank r is chosen with weight 1 / (r + 1)^zipf_skew
//    (0: uniform; about 1 gives a hottest expert several times the mean, like DeepSeek-V3);
//  - clusters: experts fall into `clusters` groups (a seeded shuffle, not contiguous ids); after a
//    token's first choice, each further choice stays in the first choice's group with
//    probability cluster_strength, which is the co-activation that affinity grouping exploits;
//  - phases: the steps are cut into `phases` equal parts and each phase rotates which experts are
//    hot (the popularity ranking shifts by experts / phases), the drift online re-placement
//    follows.
// Each token picks top_k distinct experts; gate weights, when asked for, decrease with the rank
// of the choice and sum to 1. Home ranks are left empty (the block rule applies).
//
// Deterministic: the same options (seed included) give the same trace on every platform (own
// random number generator and sampling, no std::distribution). Pure function, any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/trace.h"

namespace grace {

struct SyntheticTraceOptions {
  int experts = 64;
  int top_k = 8;
  int layers = 4;
  int steps = 64;
  int tokens_per_step = 256;
  double zipf_skew = 1.0;
  int clusters = 8;  // 0 or 1: no clusters
  double cluster_strength = 0.7;
  int phases = 4;
  bool gate_weights = true;
  uint64_t seed = 1;
  std::string model = "synthetic";
};

// Fails (InvalidArgument-style message) for options that cannot make a trace, e.g. top_k >
// experts; empty string when they are fine.
std::string CheckSyntheticTraceOptions(const SyntheticTraceOptions& options);

// Requires CheckSyntheticTraceOptions(options).empty().
Trace SynthesizeTrace(const SyntheticTraceOptions& options);

// The cluster of each expert at one layer index, as SynthesizeTrace draws it (for tests and for
// judging how much affinity a placement recovers).
std::vector<int> SyntheticClusters(const SyntheticTraceOptions& options, int layer_index);

}  // namespace grace
