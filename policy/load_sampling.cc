#include "policy/load_sampling.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>

namespace grace {
namespace {

// 53 random bits as a double in [0, 1); no std::uniform_real_distribution, whose output differs
// between standard libraries.
double Uniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// Walker's alias table (Vose's construction): one 64-bit draw picks an expert in O(1), whatever
// the number of experts. Experts of zero weight are never drawn.
class AliasTable {
 public:
  // Requires a positive total weight; `weights` are >= 0.
  explicit AliasTable(std::span<const double> weights)
      : keep_(weights.size()), alias_(weights.size()) {
    const size_t n = weights.size();
    double total = 0;
    for (double w : weights) total += w;
    std::vector<double> scaled(n);
    std::vector<int> small, large;
    for (size_t e = 0; e < n; ++e) {
      scaled[e] = weights[e] * static_cast<double>(n) / total;
      (scaled[e] < 1.0 ? small : large).push_back(static_cast<int>(e));
      alias_[e] = static_cast<int>(e);
    }
    while (!small.empty() && !large.empty()) {
      const int s = small.back(), l = large.back();
      small.pop_back();
      keep_[s] = scaled[s];
      alias_[s] = l;
      scaled[l] -= 1.0 - scaled[s];
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // What is left is 1 up to rounding; a zero-weight leftover must still never be drawn.
    for (int e : large) keep_[e] = 1.0;
    for (int e : small) keep_[e] = weights[e] > 0 ? 1.0 : 0.0;
  }

  int Draw(std::mt19937_64& rng) const {
    const uint64_t r = rng();
    const auto column = static_cast<int>(((r >> 32) * keep_.size()) >> 32);
    const double fraction = static_cast<double>(r & 0xFFFFFFFFu) * 0x1.0p-32;
    return fraction < keep_[column] ? column : alias_[column];
  }

 private:
  std::vector<double> keep_;  // chance of keeping the column's own expert
  std::vector<int> alias_;    // the expert drawn otherwise
};

// Draws among the experts not yet taken, by weight (uniformly when they all weigh 0): exact but
// O(E), for when rejection keeps hitting the few hot experts a token already holds.
int DrawUntaken(std::span<const double> weights, const std::vector<char>& taken,
                std::mt19937_64& rng) {
  double total = 0;
  int untaken = 0;
  for (size_t e = 0; e < weights.size(); ++e) {
    if (!taken[e]) total += weights[e], ++untaken;
  }
  const bool uniform = !(total > 0);
  double u = Uniform(rng) * (uniform ? untaken : total);
  int chosen = -1;
  for (size_t e = 0; e < weights.size(); ++e) {
    const double w = uniform ? 1.0 : weights[e];
    if (taken[e] || w <= 0) continue;
    chosen = static_cast<int>(e);  // the last candidate, should rounding leave u >= 0
    if ((u -= w) < 0) break;
  }
  return chosen;
}

// Each expert's chance of being among a token's top_k under SampleTopKTokens with `weights`
// (>= 0, more than top_k positive). Successive sampling is a race of exponential clocks, expert e
// ringing at rate w_e; e is taken when it rings before the top_k-th of the others:
//   inclusion_e = integral over t of w_e exp(-w_e t) P(fewer than top_k others rang by t) dt.
// The probability comes from prefix and suffix counts of the others' rings (O(E top_k) per t);
// the integral is Simpson's rule in log t, from where every clock is still quiet to where the
// (top_k + 1)-th fastest has surely rung.
std::vector<double> TopKInclusion(std::span<const double> weights, int top_k) {
  const int n = static_cast<int>(weights.size());
  const int k = top_k;
  std::vector<double> sorted(weights.begin(), weights.end());
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const double t_low = 1e-7 / sorted[0], t_high = 40.0 / sorted[k];
  constexpr int kPointsPerUnit = 16;  // of log t
  const int intervals =
      2 * static_cast<int>(std::ceil(std::log(t_high / t_low) * kPointsPerUnit / 2));
  const double step = std::log(t_high / t_low) / intervals;
  std::vector<double> inclusion(n, 0.0);
  // Before t_low nothing else has rung: the integral there is w_e t_low to first order.
  for (int e = 0; e < n; ++e) inclusion[e] = weights[e] * t_low;
  // prefix[j][a]: exactly a of experts [0, j) rang; suffix[j][b]: exactly b of [j, n).
  std::vector<double> prefix((n + 1) * k), suffix((n + 1) * k), rang(n);
  for (int i = 0; i <= intervals; ++i) {
    const double t = t_low * std::exp(step * i);
    const double simpson = (i == 0 || i == intervals) ? 1.0 : (i % 2 == 1 ? 4.0 : 2.0);
    for (int j = 0; j < n; ++j) rang[j] = -std::expm1(-weights[j] * t);
    std::fill(prefix.begin(), prefix.begin() + k, 0.0);
    prefix[0] = 1.0;
    for (int j = 0; j < n; ++j) {
      const double* from = &prefix[j * k];
      double* to = &prefix[(j + 1) * k];
      to[0] = from[0] * (1 - rang[j]);
      for (int a = 1; a < k; ++a) to[a] = from[a] * (1 - rang[j]) + from[a - 1] * rang[j];
    }
    std::fill(suffix.begin() + n * k, suffix.end(), 0.0);
    suffix[n * k] = 1.0;
    for (int j = n - 1; j >= 0; --j) {
      const double* from = &suffix[(j + 1) * k];
      double* to = &suffix[j * k];
      to[0] = from[0] * (1 - rang[j]);
      for (int b = 1; b < k; ++b) to[b] = from[b] * (1 - rang[j]) + from[b - 1] * rang[j];
    }
    for (int e = 0; e < n; ++e) {
      if (weights[e] <= 0) continue;
      // P(fewer than k of the others rang) = sum over a + b < k of prefix[e][a] suffix[e+1][b].
      const double* before = &prefix[e * k];
      const double* after = &suffix[(e + 1) * k];
      double fewer = 0, after_cumulative = 0;
      for (int b = 0, a = k - 1; a >= 0; --a, ++b) {
        after_cumulative += after[b];
        fewer += before[a] * after_cumulative;
      }
      const double density = weights[e] * std::exp(-weights[e] * t) * t;  // dt = t d(log t)
      inclusion[e] += simpson * step / 3.0 * density * fewer;
    }
  }
  return inclusion;
}

}  // namespace

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

void JitterWeights(std::span<const double> weights, double noise, std::mt19937_64& rng,
                   std::span<double> out) {
  std::normal_distribution<double> normal(0.0, 1.0);
  // Log-normal with unit mean keeps the expected share of every expert.
  for (size_t e = 0; e < weights.size(); ++e) {
    out[e] = weights[e] * std::exp(noise * normal(rng) - 0.5 * noise * noise);
  }
}

std::vector<double> SampleCountStep(std::span<const double> layer_weights, int num_experts,
                                    int64_t draws_per_layer, double noise, std::mt19937_64& rng) {
  std::vector<double> out(layer_weights.size(), 0.0);
  std::vector<double> jittered(num_experts);
  const size_t layers = layer_weights.size() / num_experts;
  for (size_t l = 0; l < layers; ++l) {
    std::span<const double> w = layer_weights.subspan(l * num_experts, num_experts);
    if (noise > 0) {
      JitterWeights(w, noise, rng, jittered);
      w = jittered;
    }
    SampleMultinomial(w, draws_per_layer, rng,
                      std::span<double>(out).subspan(l * num_experts, num_experts));
  }
  return out;
}

void SampleTopKTokens(std::span<const double> weights, int top_k, int tokens, std::mt19937_64& rng,
                      std::span<ExpertId> out) {
  const size_t n = weights.size();
  std::vector<double> clean(n);
  int positive = 0;
  for (size_t e = 0; e < n; ++e) {
    clean[e] = std::isfinite(weights[e]) && weights[e] > 0 ? weights[e] : 0.0;
    positive += clean[e] > 0;
  }
  // The first `weighted` choices of a token go by weight; any further ones are uniform over the
  // zero-weight experts (DrawUntaken once every positive one is taken).
  const int weighted = std::min(top_k, positive);
  std::optional<AliasTable> table;
  if (positive > 0) table.emplace(clean);
  std::vector<char> taken(n, 0);
  // Rejection is exact (a draw conditioned on missing the taken experts), so giving up after a
  // fixed number of tries and drawing exactly keeps the same law.
  constexpr int kTries = 32;
  for (int t = 0; t < tokens; ++t) {
    ExpertId* ids = out.data() + static_cast<size_t>(t) * top_k;
    for (int i = 0; i < top_k; ++i) {
      int e = -1;
      for (int tries = 0; i < weighted && tries < kTries && e < 0; ++tries) {
        const int candidate = table->Draw(rng);
        if (!taken[candidate]) e = candidate;
      }
      if (e < 0) e = DrawUntaken(clean, taken, rng);
      taken[e] = 1;
      ids[i] = e;
    }
    for (int i = 0; i < top_k; ++i) taken[ids[i]] = 0;
  }
}

std::vector<double> MatchTopKShares(std::span<const double> shares, int top_k) {
  const int n = static_cast<int>(shares.size());
  std::vector<double> weights(n);
  double total = 0;
  int positive = 0;
  for (int e = 0; e < n; ++e) {
    weights[e] = std::isfinite(shares[e]) && shares[e] > 0 ? shares[e] : 0.0;
    total += weights[e];
    positive += weights[e] > 0;
  }
  if (positive <= top_k) return weights;  // every token takes all of them whatever the weights
  // Targets: each expert's share of the top_k choices as a chance per token, at most kMost (a
  // chance of 1 needs an infinite weight); what a capped expert cannot take goes to the others
  // in proportion.
  constexpr double kMost = 0.995;
  std::vector<double> target(n);
  std::vector<char> capped(n, 0);
  for (int e = 0; e < n; ++e) target[e] = top_k * weights[e] / total;
  for (bool again = true; again;) {
    again = false;
    double free_total = 0, free_budget = top_k;
    for (int e = 0; e < n; ++e) {
      if (!capped[e] && target[e] > kMost) capped[e] = 1, again = true;
      if (capped[e]) {
        target[e] = kMost, free_budget -= kMost;
      } else {
        free_total += target[e];
      }
    }
    for (int e = 0; e < n; ++e) {
      if (!capped[e] && free_total > 0) target[e] *= free_budget / free_total;
    }
  }
  // Fixed point: scale each weight by how far its inclusion falls short of its target.
  for (int e = 0; e < n; ++e) weights[e] /= total;
  for (int iteration = 0; iteration < 200; ++iteration) {
    const std::vector<double> inclusion = TopKInclusion(weights, top_k);
    double worst = 0, sum = 0;
    for (int e = 0; e < n; ++e) {
      if (weights[e] <= 0) continue;
      worst = std::max(worst, std::abs(inclusion[e] - target[e]));
      weights[e] *= target[e] / inclusion[e];
      sum += weights[e];
    }
    for (double& w : weights) w /= sum;
    if (worst < 1e-6) break;
  }
  return weights;
}

}  // namespace grace
