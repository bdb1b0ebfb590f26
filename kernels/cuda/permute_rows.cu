// PermuteRows on the device: one block per output row, threads across the columns.
#include "kernels/cuda/launchers.h"

namespace grace::cuda {
namespace {

template <typename T>
__global__ void PermuteRowsKernel(const T* in, int64_t in_stride, const int32_t* src_rows, int cols,
                                  T* out, int64_t out_stride) {
  const T* src = in + static_cast<int64_t>(src_rows[blockIdx.x]) * in_stride;
  T* dst = out + static_cast<int64_t>(blockIdx.x) * out_stride;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
}

}  // namespace

void PermuteRows(const float* in, int64_t in_stride, const int32_t* src_rows, int rows, int cols,
                 float* out, int64_t out_stride, cudaStream_t stream) {
  if (rows == 0) return;
  PermuteRowsKernel<float>
      <<<rows, 128, 0, stream>>>(in, in_stride, src_rows, cols, out, out_stride);
}

}  // namespace grace::cuda
