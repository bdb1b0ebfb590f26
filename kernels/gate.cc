#include "kernels/gate.h"

#include <cmath>
#include <vector>

#include <Eigen/Dense>

namespace grace {

void GateTopK(const float* hidden, const float* gate_weight, int tokens, int hidden_size,
              int experts, int top_k, int32_t* ids, float* weights) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMajor> x(hidden, tokens, hidden_size);
  Eigen::Map<const RowMajor> g(gate_weight, experts, hidden_size);
  thread_local RowMajor logits;  // grows to the largest batch, then is reused
  logits.noalias() = x * g.transpose();
  for (int t = 0; t < tokens; ++t) {
    float* row = logits.data() + static_cast<size_t>(t) * experts;
    float max_logit = row[0];
    for (int e = 1; e < experts; ++e) max_logit = std::max(max_logit, row[e]);
    float sum = 0;
    for (int e = 0; e < experts; ++e) {
      row[e] = std::exp(row[e] - max_logit);
      sum += row[e];
    }
    // Repeated argmax: k is small (<= 32), and this keeps ties deterministic.
    for (int k = 0; k < top_k; ++k) {
      int best = -1;
      for (int e = 0; e < experts; ++e) {
        if (row[e] < 0) continue;  // already taken
        if (best < 0 || row[e] > row[best]) best = e;
      }
      ids[t * top_k + k] = best;
      weights[t * top_k + k] = row[best] / sum;
      row[best] = -1.0f;
    }
  }
}

}  // namespace grace
