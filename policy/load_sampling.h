// Load sampling: turns a count-only source (per-layer expert frequencies) into the per-step
// batches an online workload would see, for simulation and tests.
//
// SampleMultinomial draws `draws` assignments over the experts with the given probabilities
// (the conditional-binomial method: one binomial draw per expert, so cost is O(E), not O(draws)).
// A step of T tokens with top-k routing is T * k draws per layer. Optional noise perturbs the
// probabilities of each step (log-normal, relative spread `noise`) to model batch-to-batch
// workload jitter beyond sampling.
//
// Pure functions; the caller owns the random generator (seeded, so runs are reproducible).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace grace {

// out[e] = number of the `draws` that fell on expert e; `weights` need not be normalised.
void SampleMultinomial(std::span<const double> weights, int64_t draws, std::mt19937_64& rng,
                       std::span<double> out);

// One step of a count-only source: `layer_weights` is [layer][expert] (layer-major, each row a
// frequency vector), `draws_per_layer` = tokens * top_k. Returns [layer][expert] counts.
std::vector<double> SampleCountStep(std::span<const double> layer_weights, int num_experts,
                                    int64_t draws_per_layer, double noise, std::mt19937_64& rng);

}  // namespace grace
