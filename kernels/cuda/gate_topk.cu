// GateTopK on the device: one block per token; the block computes the logits, thread 0 takes
// the softmax and the top-k with the CPU twin's tie rule (lower id first).
#include "kernels/cuda/launchers.h"

namespace grace::cuda {
namespace {

template <typename T>
__global__ void GateTopKKernel(const T* hidden, const T* gate_weight, int hidden_size, int experts,
                               int top_k, int32_t* ids, float* weights) {
  extern __shared__ float logits[];
  const int t = blockIdx.x;
  const T* x = hidden + static_cast<int64_t>(t) * hidden_size;
  for (int e = threadIdx.x; e < experts; e += blockDim.x) {
    const T* g = gate_weight + static_cast<int64_t>(e) * hidden_size;
    float acc = 0;
    for (int c = 0; c < hidden_size; ++c)
      acc += static_cast<float>(x[c]) * static_cast<float>(g[c]);
    logits[e] = acc;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  float max_logit = logits[0];
  for (int e = 1; e < experts; ++e) max_logit = fmaxf(max_logit, logits[e]);
  float sum = 0;
  for (int e = 0; e < experts; ++e) {
    logits[e] = expf(logits[e] - max_logit);
    sum += logits[e];
  }
  for (int k = 0; k < top_k; ++k) {
    int best = -1;
    for (int e = 0; e < experts; ++e) {
      if (logits[e] < 0) continue;
      if (best < 0 || logits[e] > logits[best]) best = e;
    }
    ids[t * top_k + k] = best;
    weights[t * top_k + k] = logits[best] / sum;
    logits[best] = -1.0f;
  }
}

// One thread per token over its row of logits, rewritten in place with exp(l - max): the CPU
// twin's softmax and repeated argmax (lower id first on ties), taken entries marked -1.
__global__ void SoftmaxTopKKernel(float* logits, int tokens, int experts, int top_k, int32_t* ids,
                                  float* weights) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= tokens) return;
  float* row = logits + static_cast<int64_t>(t) * experts;
  float max_logit = row[0];
  for (int e = 1; e < experts; ++e) max_logit = fmaxf(max_logit, row[e]);
  float sum = 0;
  for (int e = 0; e < experts; ++e) {
    row[e] = expf(row[e] - max_logit);
    sum += row[e];
  }
  for (int k = 0; k < top_k; ++k) {
    int best = -1;
    for (int e = 0; e < experts; ++e) {
      if (row[e] < 0) continue;
      if (best < 0 || row[e] > row[best]) best = e;
    }
    ids[static_cast<int64_t>(t) * top_k + k] = best;
    weights[static_cast<int64_t>(t) * top_k + k] = row[best] / sum;
    row[best] = -1.0f;
  }
}

}  // namespace

cudaError_t SoftmaxTopK(float* logits, int tokens, int experts, int top_k, int32_t* ids,
                        float* weights, cudaStream_t stream) {
  if (tokens <= 0) return cudaSuccess;
  const int threads = 128;
  SoftmaxTopKKernel<<<(tokens + threads - 1) / threads, threads, 0, stream>>>(
      logits, tokens, experts, top_k, ids, weights);
  return cudaGetLastError();
}

void GateTopK(const float* hidden, const float* gate_weight, int tokens, int hidden_size,
              int experts, int top_k, int32_t* ids, float* weights, cudaStream_t stream) {
  if (tokens == 0) return;
  GateTopKKernel<float><<<tokens, 128, sizeof(float) * experts, stream>>>(
      hidden, gate_weight, hidden_size, experts, top_k, ids, weights);
}

}  // namespace grace::cuda
