// PermuteRows on the device: one block per output row, threads across the columns.
#include <cuda_bf16.h>

#include "kernels/cuda/launchers.h"

namespace grace::cuda {
namespace {

// Element conversions: bf16 is held as raw bits (uint16_t), as on the host.
__device__ inline float LoadFloat(float v) {
  return v;
}
__device__ inline void StoreAs(float v, float* out) {
  *out = v;
}
__device__ inline void StoreAs(float v, uint16_t* out) {
  *out = __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

template <typename In, typename Out>
__global__ void PermuteRowsKernel(const In* in, int64_t in_stride, const int32_t* src_rows,
                                  int cols, Out* out, int64_t out_stride) {
  const In* src = in + static_cast<int64_t>(src_rows[blockIdx.x]) * in_stride;
  Out* dst = out + static_cast<int64_t>(blockIdx.x) * out_stride;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) StoreAs(LoadFloat(src[c]), dst + c);
}

}  // namespace

void PermuteRows(const float* in, int64_t in_stride, const int32_t* src_rows, int rows, int cols,
                 float* out, int64_t out_stride, cudaStream_t stream) {
  if (rows <= 0) return;
  PermuteRowsKernel<float, float>
      <<<rows, 128, 0, stream>>>(in, in_stride, src_rows, cols, out, out_stride);
}

void PermuteRowsToBf16(const float* in, int64_t in_stride, const int32_t* src_rows, int rows,
                       int cols, uint16_t* out, int64_t out_stride, cudaStream_t stream) {
  if (rows <= 0) return;
  PermuteRowsKernel<float, uint16_t>
      <<<rows, 128, 0, stream>>>(in, in_stride, src_rows, cols, out, out_stride);
}

}  // namespace grace::cuda
