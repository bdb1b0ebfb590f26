// Load sampling: turns a count-only source (per-layer expert frequencies) into the per-step
// batches an online workload would see, for simulation, tests and token-level trace synthesis.
//
// SampleMultinomial draws `draws` assignments over the experts with the given probabilities
// (the conditional-binomial method: one binomial draw per expert, so cost is O(E), not O(draws)).
// A step of T tokens with top-k routing is T * k draws per layer. Optional noise perturbs the
// probabilities of each step (log-normal, relative spread `noise`) to model batch-to-batch
// workload jitter beyond sampling.
//
// SampleTopKTokens draws the tokens themselves: each token takes k distinct experts by
// successive sampling without replacement, the first with probability weight / total, each
// further one likewise among the experts the token has not taken yet (the law of the top k of
// Gumbel-perturbed log-weights). This keeps the per-expert marginals only approximately: a
// token holds an expert at most once, so an expert whose share is near 1/k is picked by fewer
// than share * k of the tokens, and the difference goes to the cold experts (the hot experts
// are flattened). On OLMoE arxiv layer 0 (64 experts, top-8) the hottest expert's share of
// 0.122 (0.98 of the tokens) comes out as 0.084, and the L1 distance between the sampled and
// the source shares is 0.081 (book: 0.032, c4: 0.016); on milder distributions the difference
// is at the level of the sampling noise (tests/policy/load_sampling_test.cc). Drawing by
// MatchTopKShares's weights instead gives the shares back (L1 0.005 over 200k tokens, the
// sampling noise, on OLMoE arxiv layer 0).
//
// Pure functions; the caller owns the random generator (seeded, so runs are reproducible).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "core/ids.h"

namespace grace {

// out[e] = number of the `draws` that fell on expert e; `weights` need not be normalised.
void SampleMultinomial(std::span<const double> weights, int64_t draws, std::mt19937_64& rng,
                       std::span<double> out);

// out[e] = weights[e] times a log-normal factor of mean 1 and relative spread `noise`, so every
// expert keeps its expected share. out.size() == weights.size().
void JitterWeights(std::span<const double> weights, double noise, std::mt19937_64& rng,
                   std::span<double> out);

// One step of a count-only source: `layer_weights` is [layer][expert] (layer-major, each row a
// frequency vector), `draws_per_layer` = tokens * top_k. Returns [layer][expert] counts.
std::vector<double> SampleCountStep(std::span<const double> layer_weights, int num_experts,
                                    int64_t draws_per_layer, double noise, std::mt19937_64& rng);

// Fills out[token * top_k + i] (out.size() == tokens * top_k) with `tokens` tokens' top_k
// distinct experts, drawn without replacement by `weights` (one per expert, not necessarily
// normalised; negative or non-finite weights count as 0). A token that has taken every expert
// of positive weight takes its remaining choices uniformly among the others. Requires
// 1 <= top_k <= weights.size(). Cost: O(E) per call plus O(top_k) per token while rejection of
// already-taken experts stays rare (an exact O(E) draw takes over when it does not).
void SampleTopKTokens(std::span<const double> weights, int top_k, int tokens, std::mt19937_64& rng,
                      std::span<ExpertId> out);

// Weights under which SampleTopKTokens gives every expert the given share of the assignments
// (shares need not be normalised), as far as top-k without replacement allows: an expert can be
// in every token at most, so a share above 1/top_k (in practice above 0.995/top_k) is held
// there and the excess spread over the others in proportion. Found by fixed-point iteration on
// the exact inclusion chances of successive sampling (a race of exponential clocks, integrated
// numerically), to within 1e-6 per expert; cost O(E top_k) per integration point and some
// hundreds of points per iteration: 4 to 110 ms for OLMoE's 64 experts, the most when a share
// is near 1/top_k. Weights of experts with no share stay 0; with top_k or fewer
// positive shares the shares are returned as they are (every token takes all of them).
std::vector<double> MatchTopKShares(std::span<const double> shares, int top_k);

}  // namespace grace
