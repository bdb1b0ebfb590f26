#include "policy/forecast_coactivation.h"

#include <algorithm>

namespace grace {

DecayedCoactivation::DecayedCoactivation(int num_layers, int num_experts, double decay)
    : num_layers_(num_layers),
      num_experts_(num_experts),
      decay_(std::clamp(decay, 1e-6, 1.0)),
      block_(static_cast<size_t>(num_experts) * num_experts),
      counts_(static_cast<size_t>(num_layers) * block_, 0.0) {}

void DecayedCoactivation::NextInterval() {
  scale_ /= decay_;
  if (scale_ > 1e150) Renormalise();
}

void DecayedCoactivation::Renormalise() {
  const double inv = 1.0 / scale_;
  for (double& c : counts_) c *= inv;
  scale_ = 1.0;
}

void DecayedCoactivation::AddMatrix(int layer, std::span<const double> matrix) {
  if (layer < 0 || layer >= num_layers_ || matrix.size() != block_) return;
  double* block = Block(layer);
  for (size_t i = 0; i < block_; ++i) block[i] += matrix[i] * scale_;
}

void DecayedCoactivation::AddTokens(int layer, std::span<const ExpertId> ids, int top_k) {
  if (layer < 0 || layer >= num_layers_ || top_k <= 0) return;
  double* block = Block(layer);
  const size_t tokens = ids.size() / top_k;
  for (size_t t = 0; t < tokens; ++t) {
    const ExpertId* chosen = ids.data() + t * top_k;
    for (int i = 0; i < top_k; ++i) {
      const ExpertId a = chosen[i];
      if (a < 0 || a >= num_experts_) continue;
      for (int j = i + 1; j < top_k; ++j) {
        const ExpertId b = chosen[j];
        if (b < 0 || b >= num_experts_ || b == a) continue;
        block[static_cast<size_t>(a) * num_experts_ + b] += scale_;
        block[static_cast<size_t>(b) * num_experts_ + a] += scale_;
      }
    }
  }
}

void DecayedCoactivation::AddPair(int layer, ExpertId a, ExpertId b, double count) {
  if (layer < 0 || layer >= num_layers_ || a == b || a < 0 || b < 0 || a >= num_experts_ ||
      b >= num_experts_ || !(count > 0)) {
    return;
  }
  double* block = Block(layer);
  block[static_cast<size_t>(a) * num_experts_ + b] += count * scale_;
  block[static_cast<size_t>(b) * num_experts_ + a] += count * scale_;
}

Eigen::MatrixXd DecayedCoactivation::Layer(int layer) const {
  Eigen::MatrixXd out = Eigen::MatrixXd::Zero(num_experts_, num_experts_);
  if (layer < 0 || layer >= num_layers_) return out;
  const double* block = counts_.data() + static_cast<size_t>(layer) * block_;
  const double inv = 1.0 / scale_;
  for (int a = 0; a < num_experts_; ++a) {
    for (int b = 0; b < num_experts_; ++b) out(a, b) = block[a * num_experts_ + b] * inv;
  }
  return out;
}

void DecayedCoactivation::ResetLayer(int layer) {
  if (layer < 0 || layer >= num_layers_) return;
  std::fill_n(Block(layer), block_, 0.0);
}

}  // namespace grace
