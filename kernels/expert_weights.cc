#include "kernels/expert_weights.h"

#include <cmath>

#include "kernels/route_hash.h"

namespace grace {
namespace {

void Fill(std::vector<float>& v, uint64_t seed, float scale) {
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = (2.0f * HashToUnit(HashCombine(seed, i)) - 1.0f) * scale;
  }
}

}  // namespace

ExpertWeights ExpertWeights::Zeros(const ModelShape& shape) {
  ExpertWeights w;
  w.shape = shape;
  const size_t e = shape.num_experts, h = shape.hidden, f = shape.ffn;
  w.gate.assign(shape.num_layers, std::vector<float>(e * h));
  w.w1.assign(shape.num_layers, std::vector<float>(e * f * h));
  w.w3.assign(shape.num_layers, std::vector<float>(e * f * h));
  w.w2.assign(shape.num_layers, std::vector<float>(e * h * f));
  return w;
}

ExpertWeights GenerateExpertWeights(const ModelShape& shape, uint64_t seed) {
  ExpertWeights w = ExpertWeights::Zeros(shape);
  const float in_scale = 1.0f / std::sqrt(static_cast<float>(shape.hidden));
  const float out_scale = 1.0f / std::sqrt(static_cast<float>(shape.ffn));
  for (int l = 0; l < shape.num_layers; ++l) {
    const uint64_t s = HashCombine(seed, static_cast<uint64_t>(l));
    Fill(w.gate[l], HashCombine(s, 1), in_scale);
    Fill(w.w1[l], HashCombine(s, 2), in_scale);
    Fill(w.w3[l], HashCombine(s, 3), in_scale);
    Fill(w.w2[l], HashCombine(s, 4), out_scale);
  }
  return w;
}

}  // namespace grace
