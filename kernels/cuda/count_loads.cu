// CountLoads on the device: one thread per token; atomics on the per-expert counters.
#include "kernels/cuda/launchers.h"

namespace grace::cuda {
namespace {

template <typename Counter>
__global__ void CountLoadsKernel(const int32_t* expert_ids, const int64_t* token_ids, int tokens,
                                 int top_k, int experts, int sample_every, Counter* load,
                                 Counter* coactivation) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= tokens) return;
  const int32_t* ids = expert_ids + static_cast<int64_t>(t) * top_k;
  for (int k = 0; k < top_k; ++k) atomicAdd(&load[ids[k]], Counter{1});
  if (token_ids[t] % sample_every != 0) return;
  for (int a = 0; a < top_k; ++a) {
    for (int b = a + 1; b < top_k; ++b) {
      atomicAdd(&coactivation[static_cast<int64_t>(ids[a]) * experts + ids[b]], Counter{1});
      atomicAdd(&coactivation[static_cast<int64_t>(ids[b]) * experts + ids[a]], Counter{1});
    }
  }
}

}  // namespace

void CountLoads(const int32_t* expert_ids, const int64_t* token_ids, int tokens, int top_k,
                int experts, int sample_every, unsigned long long* load,
                unsigned long long* coactivation, cudaStream_t stream) {
  if (tokens == 0) return;
  const int threads = 128;
  CountLoadsKernel<unsigned long long><<<(tokens + threads - 1) / threads, threads, 0, stream>>>(
      expert_ids, token_ids, tokens, top_k, experts, sample_every < 1 ? 1 : sample_every, load,
      coactivation);
}

}  // namespace grace::cuda
