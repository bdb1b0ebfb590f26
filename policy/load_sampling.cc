#include "policy/load_sampling.h"

#include <algorithm>
#include <cmath>

namespace grace {

void SampleMultinomial(std::span<const double> weights, int64_t draws, std::mt19937_64& rng,
                       std::span<double> out) {
  double remaining_weight = 0;
  for (double w : weights) remaining_weight += std::max(0.0, w);
  int64_t remaining = draws;
  for (size_t e = 0; e < weights.size(); ++e) {
    const double w = std::max(0.0, weights[e]);
    int64_t k = 0;
    if (remaining > 0 && w > 0 && remaining_weight > 0) {
      const double p = std::min(1.0, w / remaining_weight);
      k = p >= 1.0 ? remaining : std::binomial_distribution<int64_t>(remaining, p)(rng);
    }
    out[e] = static_cast<double>(k);
    remaining -= k;
    remaining_weight -= w;
  }
}

std::vector<double> SampleCountStep(std::span<const double> layer_weights, int num_experts,
                                    int64_t draws_per_layer, double noise, std::mt19937_64& rng) {
  std::vector<double> out(layer_weights.size(), 0.0);
  std::vector<double> jittered(num_experts);
  std::normal_distribution<double> normal(0.0, 1.0);
  const size_t layers = layer_weights.size() / num_experts;
  for (size_t l = 0; l < layers; ++l) {
    std::span<const double> w = layer_weights.subspan(l * num_experts, num_experts);
    if (noise > 0) {
      // Log-normal with unit mean keeps the expected share of every expert.
      for (int e = 0; e < num_experts; ++e) {
        jittered[e] = w[e] * std::exp(noise * normal(rng) - 0.5 * noise * noise);
      }
      w = jittered;
    }
    SampleMultinomial(w, draws_per_layer, rng,
                      std::span<double>(out).subspan(l * num_experts, num_experts));
  }
  return out;
}

}  // namespace grace
