#include "core/synthetic_trace.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace grace {
namespace {

// SplitMix64: small, fast and specified bit for bit, so traces match across standard libraries.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  int Below(int n) { return static_cast<int>(Uniform() * n); }

 private:
  uint64_t state_;
};

uint64_t Mix(uint64_t seed, uint64_t a, uint64_t b = 0) {
  Rng r(seed ^ (a * 0xD1B54A32D192ED03ull) ^ (b * 0x8CB92BA72F3D8DD7ull));
  return r.Next();
}

void Shuffle(std::vector<int>* v, Rng* rng) {
  for (int i = static_cast<int>(v->size()) - 1; i > 0; --i)
    std::swap((*v)[i], (*v)[rng->Below(i + 1)]);
}

// Draws index i with probability weights[i] / sum from a cumulative table.
int Draw(const std::vector<double>& cumulative, Rng* rng) {
  const double u = rng->Uniform() * cumulative.back();
  const auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
  return std::min(static_cast<int>(it - cumulative.begin()),
                  static_cast<int>(cumulative.size()) - 1);
}

// Draws among the experts not yet taken, by weight: exact but O(experts), for when rejection
// keeps hitting the few hot experts a token already has.
int DrawUntaken(const std::vector<double>& weight, const std::vector<char>& taken, Rng* rng) {
  double total = 0;
  int last = -1;
  for (size_t e = 0; e < weight.size(); ++e) {
    if (!taken[e]) total += weight[e], last = static_cast<int>(e);
  }
  double u = rng->Uniform() * total;
  for (size_t e = 0; e < weight.size(); ++e) {
    if (taken[e]) continue;
    if ((u -= weight[e]) < 0) return static_cast<int>(e);
  }
  return last;
}

struct LayerModel {
  std::vector<int> cluster_of;                  // expert -> cluster
  std::vector<std::vector<int>> members;        // cluster -> experts
  std::vector<std::vector<double>> weight;      // phase -> expert -> popularity weight
  std::vector<std::vector<double>> cumulative;  // phase -> cumulative over experts
  std::vector<std::vector<std::vector<double>>> cluster_cumulative;  // phase, cluster
};

LayerModel BuildLayer(const SyntheticTraceOptions& o, int layer) {
  LayerModel m;
  m.cluster_of = SyntheticClusters(o, layer);
  const int clusters = std::max(1, o.clusters);
  m.members.resize(clusters);
  for (int e = 0; e < o.experts; ++e) m.members[m.cluster_of[e]].push_back(e);
  // A per-layer popularity ranking, rotated by experts / phases at each phase.
  Rng rng(Mix(o.seed, 2, layer));
  std::vector<int> ranking(o.experts);
  std::iota(ranking.begin(), ranking.end(), 0);
  Shuffle(&ranking, &rng);
  const int phases = std::max(1, o.phases);
  for (int p = 0; p < phases; ++p) {
    std::vector<double> w(o.experts);
    const int shift = p * o.experts / phases;
    for (int r = 0; r < o.experts; ++r) {
      w[ranking[(r + shift) % o.experts]] = 1.0 / std::pow(r + 1.0, o.zipf_skew);
    }
    std::vector<double> cum(o.experts);
    std::partial_sum(w.begin(), w.end(), cum.begin());
    std::vector<std::vector<double>> per_cluster(clusters);
    for (int c = 0; c < clusters; ++c) {
      double s = 0;
      for (int e : m.members[c]) per_cluster[c].push_back(s += w[e]);
    }
    m.weight.push_back(std::move(w));
    m.cumulative.push_back(std::move(cum));
    m.cluster_cumulative.push_back(std::move(per_cluster));
  }
  return m;
}

}  // namespace

std::string CheckSyntheticTraceOptions(const SyntheticTraceOptions& o) {
  if (o.experts < 1 || o.experts > 65536) return "experts must be in [1, 65536]";
  if (o.top_k < 1 || o.top_k > o.experts) return "top_k must be in [1, experts]";
  if (o.layers < 1 || o.layers > 4096) return "layers must be in [1, 4096]";
  if (o.steps < 1) return "steps must be at least 1";
  if (o.tokens_per_step < 1) return "tokens_per_step must be at least 1";
  if (!(o.zipf_skew >= 0 && o.zipf_skew <= 10)) return "zipf_skew must be in [0, 10]";
  if (o.clusters < 0 || o.clusters > o.experts) return "clusters must be in [0, experts]";
  if (!(o.cluster_strength >= 0 && o.cluster_strength <= 1))
    return "cluster_strength must be in [0, 1]";
  if (o.phases < 1 || o.phases > o.steps) return "phases must be in [1, steps]";
  // The trace is built in memory: bound it before anything is allocated.
  constexpr int64_t kMaxChoices = int64_t{1} << 28;
  const int64_t choices = int64_t{o.steps} * o.tokens_per_step * o.layers * o.top_k;
  if (o.steps > kMaxChoices || o.tokens_per_step > kMaxChoices || choices > kMaxChoices) {
    return "steps x tokens_per_step x layers x top_k = " + std::to_string(choices) +
           " expert choices, over the " + std::to_string(kMaxChoices) +
           " a synthetic trace may hold; write fewer steps";
  }
  return "";
}

std::vector<int> SyntheticClusters(const SyntheticTraceOptions& o, int layer_index) {
  const int clusters = std::max(1, o.clusters);
  std::vector<int> order(o.experts);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(Mix(o.seed, 1, layer_index));
  Shuffle(&order, &rng);
  std::vector<int> cluster_of(o.experts);
  for (int i = 0; i < o.experts; ++i) cluster_of[order[i]] = i * clusters / o.experts;
  return cluster_of;
}

Trace SynthesizeTrace(const SyntheticTraceOptions& o) {
  Trace trace;
  trace.info.format = "synthetic";
  trace.info.model = o.model;
  trace.info.kind = TraceKind::kTokens;
  trace.info.num_experts = o.experts;
  trace.info.top_k = o.top_k;
  for (int l = 0; l < o.layers; ++l) trace.info.layer_ids.push_back(l);
  std::vector<LayerModel> models;
  for (int l = 0; l < o.layers; ++l) models.push_back(BuildLayer(o, l));
  std::vector<float> weights(o.top_k);
  float total = 0;
  for (int k = 0; k < o.top_k; ++k) total += weights[k] = 1.0f / static_cast<float>(k + 1);
  for (float& w : weights) w /= total;

  const bool clustered = o.clusters > 1 && o.cluster_strength > 0;
  std::vector<char> taken(o.experts, 0);
  for (int s = 0; s < o.steps; ++s) {
    const int phase = static_cast<int>(static_cast<int64_t>(s) * std::max(1, o.phases) / o.steps);
    Rng rng(Mix(o.seed, 3, s));
    TraceStep step;
    step.kind = TraceKind::kTokens;
    step.tokens.num_tokens = o.tokens_per_step;
    const size_t ids = static_cast<size_t>(o.layers) * o.tokens_per_step * o.top_k;
    step.tokens.expert_ids.resize(ids);
    if (o.gate_weights) step.tokens.gate_weights.resize(ids);
    for (int l = 0; l < o.layers; ++l) {
      const LayerModel& m = models[l];
      for (int t = 0; t < o.tokens_per_step; ++t) {
        ExpertId* out =
            &step.tokens.expert_ids[(static_cast<size_t>(l) * o.tokens_per_step + t) * o.top_k];
        for (int k = 0; k < o.top_k; ++k) {
          int e = -1;
          if (k > 0 && clustered && rng.Uniform() < o.cluster_strength) {
            const int c = m.cluster_of[out[0]];
            const std::vector<int>& members = m.members[c];
            // A few tries in the group; a group whose members are all taken falls back below.
            for (int tries = 0; tries < 8 && e < 0; ++tries) {
              const int cand = members[Draw(m.cluster_cumulative[phase][c], &rng)];
              if (!taken[cand]) e = cand;
            }
          }
          for (int tries = 0; tries < 32 && e < 0; ++tries) {
            const int cand = Draw(m.cumulative[phase], &rng);
            if (!taken[cand]) e = cand;
          }
          if (e < 0) e = DrawUntaken(m.weight[phase], taken, &rng);  // steep skews
          taken[e] = 1;
          out[k] = e;
        }
        for (int k = 0; k < o.top_k; ++k) taken[out[k]] = 0;
        if (o.gate_weights) {
          std::copy(weights.begin(), weights.end(),
                    step.tokens.gate_weights.begin() + (out - step.tokens.expert_ids.data()));
        }
      }
    }
    trace.steps.push_back(std::move(step));
  }
  return trace;
}

}  // namespace grace
