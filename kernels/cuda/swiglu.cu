// Swiglu on the device: the elementwise activation between the expert FFN's GEMMs.
#include <cuda_bf16.h>

#include "kernels/cuda/launchers.h"

namespace grace::cuda {
namespace {

template <typename T>
__global__ void SwigluKernel(T* gate, const T* up, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = static_cast<float>(gate[i]);
    gate[i] = static_cast<T>(g / (1.0f + expf(-g)) * static_cast<float>(up[i]));
  }
}

__global__ void SwigluBf16Kernel(uint16_t* gate, const uint16_t* up, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = __bfloat162float(__ushort_as_bfloat16(gate[i]));
    const float u = __bfloat162float(__ushort_as_bfloat16(up[i]));
    gate[i] = __bfloat16_as_ushort(__float2bfloat16_rn(g / (1.0f + expf(-g)) * u));
  }
}

unsigned GridFor(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 4096 ? blocks : 4096);
}

}  // namespace

cudaError_t SwigluBf16(uint16_t* gate, const uint16_t* up, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int threads = 256;
  SwigluBf16Kernel<<<GridFor(n, threads), threads, 0, stream>>>(gate, up, n);
  return cudaGetLastError();
}

void Swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  SwigluKernel<float><<<GridFor(n, threads), threads, 0, stream>>>(gate, up, n);
}

}  // namespace grace::cuda
