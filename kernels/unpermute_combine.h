// UnpermuteCombine: the weighted gather-sum that undoes a permutation and combines expert
// outputs with the gate weights.
//
//   out[i] = sum_{j in [offsets[i], offsets[i+1])} w[j] * in[rows[j]]     (w = 1 when null)
//
// On the expert rank it sums, per dispatched token copy, the outputs of its experts there,
// weighted by their gate weights; on the home rank (weights null) it sums the partial results
// returned by each destination rank into the token's output. The sum runs in j order, so the
// result does not depend on threads. CUDA twin: kernels/cuda/unpermute_combine.cu.
#pragma once

#include <cstdint>

namespace grace {

void UnpermuteCombine(const float* in, int64_t in_stride, const int32_t* offsets,
                      const int32_t* rows, const float* weights, int out_rows, int cols, float* out,
                      int64_t out_stride);

}  // namespace grace
