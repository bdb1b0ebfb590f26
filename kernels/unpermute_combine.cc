#include "kernels/unpermute_combine.h"

namespace grace {

void UnpermuteCombine(const float* in, int64_t in_stride, const int32_t* offsets,
                      const int32_t* rows, const float* weights, int out_rows, int cols, float* out,
                      int64_t out_stride) {
  for (int i = 0; i < out_rows; ++i) {
    float* o = out + i * out_stride;
    for (int c = 0; c < cols; ++c) o[c] = 0.0f;
    for (int j = offsets[i]; j < offsets[i + 1]; ++j) {
      const float w = weights == nullptr ? 1.0f : weights[j];
      const float* src = in + static_cast<int64_t>(rows[j]) * in_stride;
      for (int c = 0; c < cols; ++c) o[c] += w * src[c];
    }
  }
}

}  // namespace grace
