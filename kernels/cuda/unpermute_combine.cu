// UnpermuteCombine on the device: one block per output row; each thread sums its columns in
// the CPU twin's j order, so results match it up to fused multiply-add rounding.
#include "kernels/cuda/launchers.h"

namespace grace::cuda {
namespace {

template <typename T>
__global__ void UnpermuteCombineKernel(const T* in, int64_t in_stride, const int32_t* offsets,
                                       const int32_t* rows, const float* weights, int cols, T* out,
                                       int64_t out_stride) {
  const int i = blockIdx.x;
  T* o = out + static_cast<int64_t>(i) * out_stride;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float acc = 0;
    for (int j = offsets[i]; j < offsets[i + 1]; ++j) {
      const float w = weights == nullptr ? 1.0f : weights[j];
      acc += w * static_cast<float>(in[static_cast<int64_t>(rows[j]) * in_stride + c]);
    }
    o[c] = static_cast<T>(acc);
  }
}

}  // namespace

void UnpermuteCombine(const float* in, int64_t in_stride, const int32_t* offsets,
                      const int32_t* rows, const float* weights, int out_rows, int cols, float* out,
                      int64_t out_stride, cudaStream_t stream) {
  if (out_rows == 0) return;
  UnpermuteCombineKernel<float>
      <<<out_rows, 128, 0, stream>>>(in, in_stride, offsets, rows, weights, cols, out, out_stride);
}

}  // namespace grace::cuda
