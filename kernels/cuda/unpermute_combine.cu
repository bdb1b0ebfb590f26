// UnpermuteCombine on the device: one block per output row; each thread sums its columns in
// the CPU twin's j order, so results match it up to fused multiply-add rounding.
#include <cuda_bf16.h>

#include "kernels/cuda/launchers.h"

namespace grace::cuda {
namespace {

__device__ inline float LoadFloat(float v) {
  return v;
}
__device__ inline float LoadFloat(uint16_t bits) {
  return __bfloat162float(__ushort_as_bfloat16(bits));
}

// Accumulate: out[c] += sum (the sum formed first), else out[c] = sum.
template <typename In, bool Accumulate>
__global__ void UnpermuteCombineKernel(const In* in, int64_t in_stride, const int32_t* offsets,
                                       const int32_t* rows, const float* weights, int cols,
                                       float* out, int64_t out_stride) {
  const int i = blockIdx.x;
  float* o = out + static_cast<int64_t>(i) * out_stride;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float acc = 0;
    for (int j = offsets[i]; j < offsets[i + 1]; ++j) {
      const float w = weights == nullptr ? 1.0f : weights[j];
      acc += w * LoadFloat(in[static_cast<int64_t>(rows[j]) * in_stride + c]);
    }
    if (Accumulate) {
      o[c] += acc;
    } else {
      o[c] = acc;
    }
  }
}

}  // namespace

void UnpermuteCombine(const float* in, int64_t in_stride, const int32_t* offsets,
                      const int32_t* rows, const float* weights, int out_rows, int cols, float* out,
                      int64_t out_stride, cudaStream_t stream) {
  if (out_rows <= 0) return;
  UnpermuteCombineKernel<float, false>
      <<<out_rows, 128, 0, stream>>>(in, in_stride, offsets, rows, weights, cols, out, out_stride);
}

void UnpermuteCombineFromBf16(const uint16_t* in, int64_t in_stride, const int32_t* offsets,
                              const int32_t* rows, const float* weights, int out_rows, int cols,
                              float* out, int64_t out_stride, cudaStream_t stream) {
  if (out_rows <= 0) return;
  UnpermuteCombineKernel<uint16_t, false>
      <<<out_rows, 128, 0, stream>>>(in, in_stride, offsets, rows, weights, cols, out, out_stride);
}

void UnpermuteCombineAdd(const float* in, int64_t in_stride, const int32_t* offsets,
                         const int32_t* rows, const float* weights, int out_rows, int cols,
                         float* out, int64_t out_stride, cudaStream_t stream) {
  if (out_rows <= 0) return;
  UnpermuteCombineKernel<float, true>
      <<<out_rows, 128, 0, stream>>>(in, in_stride, offsets, rows, weights, cols, out, out_stride);
}

}  // namespace grace::cuda
