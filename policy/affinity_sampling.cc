#include "policy/affinity_sampling.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

namespace grace {

namespace {

// Draws an index with probability weight[i] / sum (sum > 0) by a scan: O(E), no allocation.
int DrawLinear(std::span<const double> weight, double sum, std::mt19937_64& rng) {
  double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
  int last = -1;
  for (size_t i = 0; i < weight.size(); ++i) {
    if (weight[i] <= 0) continue;
    last = static_cast<int>(i);
    u -= weight[i];
    if (u < 0) return last;
  }
  return last;  // rounding: the last positive weight
}

class Sampler {
 public:
  Sampler(std::span<const double> load, const AffinityMatrix& affinity, int top_k,
          const AffinitySamplingOptions& options)
      : experts_(static_cast<int>(load.size())),
        top_k_(top_k),
        options_(options),
        load_(load.begin(), load.end()),
        cond_(static_cast<size_t>(experts_) * experts_, 0.0),
        weight_(experts_, 0.0),
        chosen_(experts_, 0) {
    for (double& v : load_) v = v > 0 ? v : 0.0;
    const double total = std::accumulate(load_.begin(), load_.end(), 0.0);
    const double s = std::clamp(options.smoothing, 0.0, 1.0);
    const int n = std::min(experts_, affinity.num_experts());
    std::vector<double> row_sum(experts_, 0.0);
    double pair_sum = 0;
    for (ExpertId c = 0; c < n; ++c) {
      std::span<const double> row = affinity.row(c);
      for (ExpertId e = 0; e < n; ++e) {
        if (e != c && row[e] > 0 && load_[e] > 0) row_sum[c] += row[e];
      }
      pair_sum += row_sum[c];
    }
    // The pairs' scale against the loads (the agents sample a share of the tokens): complete
    // pairs of expert c sum to (k - 1) x its load x `sampled`. A row short of that (pairs the
    // agents dropped) draws the rest from the load distribution.
    const double sampled = pair_sum / (std::max(1, top_k - 1) * total);
    for (ExpertId c = 0; c < experts_; ++c) {
      const double expected = std::max(1, top_k - 1) * load_[c] * sampled;
      const double observed =
          row_sum[c] > 0 && expected > 0 ? (1.0 - s) * std::min(1.0, row_sum[c] / expected) : 0.0;
      double* out = cond_.data() + static_cast<size_t>(c) * experts_;
      for (ExpertId e = 0; e < experts_; ++e) {
        out[e] = (1.0 - observed) * load_[e] / total;
        const double a = e != c && c < n && e < n ? affinity.row(c)[e] : 0.0;
        if (observed > 0 && a > 0 && load_[e] > 0) out[e] += observed * a / row_sum[c];
      }
    }
  }

  // Every token's ids into `out` (num_tokens x top_k), the first expert drawn by `first`.
  void Draw(std::span<const double> first, int num_tokens, std::vector<ExpertId>* out) {
    std::mt19937_64 rng(options_.seed);
    std::vector<double> cumulative(experts_);
    std::partial_sum(first.begin(), first.end(), cumulative.begin());
    const double first_sum = cumulative.back();
    out->assign(static_cast<size_t>(num_tokens) * top_k_, 0);
    for (int t = 0; t < num_tokens; ++t) {
      ExpertId* ids = out->data() + static_cast<size_t>(t) * top_k_;
      const double u = std::uniform_real_distribution<double>(0.0, first_sum)(rng);
      ExpertId e = static_cast<ExpertId>(std::upper_bound(cumulative.begin(), cumulative.end(), u) -
                                         cumulative.begin());
      e = std::min<ExpertId>(e, experts_ - 1);
      while (first[e] <= 0) e = (e + 1) % experts_;  // u landed on a zero-width bucket's edge
      ids[0] = e;
      chosen_[e] = 1;
      std::fill(weight_.begin(), weight_.end(), 0.0);
      for (int k = 1; k < top_k_; ++k) {
        const double* row = cond_.data() + static_cast<size_t>(ids[k - 1]) * experts_;
        for (ExpertId x = 0; x < experts_; ++x) weight_[x] += row[x];
        std::vector<double>& w = masked_;
        w.assign(weight_.begin(), weight_.end());
        for (int j = 0; j < k; ++j) w[ids[j]] = 0.0;
        double sum = std::accumulate(w.begin(), w.end(), 0.0);
        if (sum <= 0) {  // the rows put all their mass on chosen experts: fall back to the load
          for (ExpertId x = 0; x < experts_; ++x) w[x] = chosen_[x] ? 0.0 : load_[x];
          sum = std::accumulate(w.begin(), w.end(), 0.0);
        }
        ids[k] = DrawLinear(w, sum, rng);
        chosen_[ids[k]] = 1;
      }
      for (int k = 0; k < top_k_; ++k) chosen_[ids[k]] = 0;
    }
  }

 private:
  int experts_;
  int top_k_;
  AffinitySamplingOptions options_;
  std::vector<double> load_;
  std::vector<double> cond_;  // [chosen][next]: the chance of `next` given `chosen`
  std::vector<double> weight_, masked_;
  std::vector<char> chosen_;
};

}  // namespace

int DefaultAffinityTokens(int num_experts) {
  return std::clamp(32 * num_experts, 2048, 4096);
}

bool HasPairs(const AffinityMatrix& affinity) {
  const int experts = affinity.num_experts();
  for (ExpertId a = 0; a < experts; ++a) {
    std::span<const double> row = affinity.row(a);
    for (ExpertId b = 0; b < experts; ++b) {
      if (a != b && row[b] > 0) return true;
    }
  }
  return false;
}

LayerTokens SampleTokensFromAffinity(std::span<const double> load, const AffinityMatrix& affinity,
                                     int top_k, const AffinitySamplingOptions& options) {
  LayerTokens tokens;
  const int experts = static_cast<int>(load.size());
  const int loaded =
      static_cast<int>(std::count_if(load.begin(), load.end(), [](double v) { return v > 0; }));
  if (top_k < 1 || loaded == 0) return tokens;
  tokens.top_k = std::min(top_k, loaded);
  const int n = options.num_tokens > 0 ? options.num_tokens : DefaultAffinityTokens(experts);
  Sampler sampler(load, affinity, tokens.top_k, options);
  const double total = std::accumulate(load.begin(), load.end(), 0.0,
                                       [](double s, double v) { return s + std::max(0.0, v); });
  std::vector<double> first(experts, 0.0), target(experts, 0.0), seen(experts, 0.0);
  for (ExpertId e = 0; e < experts; ++e) {
    target[e] = load[e] > 0 ? load[e] / total * n * tokens.top_k : 0.0;
    first[e] = load[e] > 0 ? load[e] / total : 0.0;
  }
  // Proportional fitting: an expert that later picks over-serve (a popular partner) is drawn
  // first less often, one under-served more often, until the loads match.
  for (int round = 0; round < std::max(0, options.fitting_rounds); ++round) {
    sampler.Draw(first, n, &tokens.expert_ids);
    std::fill(seen.begin(), seen.end(), 0.0);
    for (ExpertId e : tokens.expert_ids) seen[e] += 1.0;
    for (ExpertId e = 0; e < experts; ++e) {
      if (target[e] <= 0) continue;
      const double ratio = seen[e] > 0 ? target[e] / seen[e] : 2.0;
      first[e] *= std::clamp(ratio, 0.25, 4.0);
    }
  }
  sampler.Draw(first, n, &tokens.expert_ids);
  return tokens;
}

LayerStats WithAffinityTokens(const LayerStats& stats, const AffinitySamplingOptions& options) {
  LayerStats out = stats;
  if ((stats.tokens && stats.tokens->num_tokens() > 0) || !stats.affinity ||
      !HasPairs(*stats.affinity)) {
    return out;
  }
  LayerTokens tokens =
      SampleTokensFromAffinity(stats.load, *stats.affinity, std::max(1, stats.top_k), options);
  if (tokens.num_tokens() > 0) out.tokens = std::move(tokens);
  return out;
}

}  // namespace grace
