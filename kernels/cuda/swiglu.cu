// Swiglu on the device: the elementwise activation between the expert FFN's GEMMs.
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

}  // namespace

void Swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  SwigluKernel<float>
      <<<static_cast<unsigned>(blocks < 4096 ? blocks : 4096), threads, 0, stream>>>(gate, up, n);
}

}  // namespace grace::cuda
