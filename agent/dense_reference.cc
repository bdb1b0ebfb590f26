#include "agent/dense_reference.h"

#include <Eigen/Dense>

#include "kernels/gate.h"
#include "kernels/route_hash.h"

namespace grace {

void GenerateHidden(uint64_t seed, int64_t token, int hidden, float* out) {
  const uint64_t s = HashCombine(seed, static_cast<uint64_t>(token));
  for (int c = 0; c < hidden; ++c) out[c] = 2.0f * HashToUnit(HashCombine(s, c)) - 1.0f;
}

void TraceRouting(const TokenBatch& batch, int layer_index, int top_k, const int32_t* token_rows,
                  int tokens, int32_t* ids, float* weights) {
  const int64_t base = static_cast<int64_t>(layer_index) * batch.num_tokens;
  for (int t = 0; t < tokens; ++t) {
    const int64_t src = (base + token_rows[t]) * top_k;
    for (int k = 0; k < top_k; ++k) {
      ids[t * top_k + k] = batch.expert_ids[src + k];
      weights[t * top_k + k] =
          batch.gate_weights.empty() ? 1.0f / top_k : batch.gate_weights[src + k];
    }
  }
}

void DenseForward(const ExpertWeights& w, const TokenBatch* batch, const int32_t* token_rows,
                  int tokens, float* x) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const ModelShape& s = w.shape;
  const int h = s.hidden, f = s.ffn, k = s.top_k;
  std::vector<int32_t> ids(static_cast<size_t>(tokens) * k);
  std::vector<float> gw(ids.size());
  std::vector<float> out(static_cast<size_t>(tokens) * h);
  for (int li = 0; li < s.num_layers; ++li) {
    if (batch != nullptr) {
      TraceRouting(*batch, li, k, token_rows, tokens, ids.data(), gw.data());
    } else {
      GateTopK(x, w.gate[li].data(), tokens, h, s.num_experts, k, ids.data(), gw.data());
    }
    std::fill(out.begin(), out.end(), 0.0f);
    for (int t = 0; t < tokens; ++t) {
      Eigen::Map<const RowMajor> xt(x + static_cast<int64_t>(t) * h, 1, h);
      for (int j = 0; j < k; ++j) {
        const int e = ids[t * k + j];
        Eigen::Map<const RowMajor> w1(w.W1(li, e), f, h), w3(w.W3(li, e), f, h),
            w2(w.W2(li, e), h, f);
        RowMajor g = xt * w1.transpose();
        RowMajor u = xt * w3.transpose();
        g = (g.array() / (1.0f + (-g.array()).exp())) * u.array();
        RowMajor y = g * w2.transpose();
        for (int c = 0; c < h; ++c) out[static_cast<size_t>(t) * h + c] += gw[t * k + j] * y(0, c);
      }
    }
    for (size_t i = 0; i < out.size(); ++i) x[i] += out[i];
  }
}

}  // namespace grace
