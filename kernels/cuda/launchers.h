// Host launchers of grace's CUDA kernels, one .cu file each (NCCL/DeepEP style: a templated
// __global__ kernel and a launcher of the same name taking raw device pointers, sizes and a
// stream). Each is the twin of a CPU op in kernels/ and is tested against it. Launchers only
// enqueue work; errors surface through CudaStatus (kernels/cuda_device.h) at the next check
// (cudaGetLastError after the launch).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace grace::cuda {

// kernels/gate.h on the device.
void GateTopK(const float* hidden, const float* gate_weight, int tokens, int hidden_size,
              int experts, int top_k, int32_t* ids, float* weights, cudaStream_t stream);

// The second half of GateTopK on logits computed elsewhere (a cuBLAS GEMM: the device MoE
// layer's gate): logits [tokens x experts] are overwritten (scratch). Returns the launch's error.
cudaError_t SoftmaxTopK(float* logits, int tokens, int experts, int top_k, int32_t* ids,
                        float* weights, cudaStream_t stream);

// The routing table flattened for the device (kernels/cuda/device_routing_table.h).
struct RoutingView {
  const uint32_t* entry_offset;  // [layer][rank][expert]
  const uint32_t* entry_count;
  const int32_t* candidate_slot;
  const float* candidate_cumulative;
  int ranks;
  int experts;
};

// kernels/select_replicas.h on the device.
void SelectReplicas(RoutingView table, int layer_index, int rank, const int32_t* expert_ids,
                    const int64_t* token_ids, int tokens, int top_k, uint64_t seed, uint64_t step,
                    int32_t* slots, cudaStream_t stream);

// kernels/permute.h on the device.
void PermuteRows(const float* in, int64_t in_stride, const int32_t* src_rows, int rows, int cols,
                 float* out, int64_t out_stride, cudaStream_t stream);

// PermuteRows from float32 rows into bfloat16 rows (raw bits, kernels/bf16.h; rounded to nearest
// even): the device MoE layer's gather of received records into the grouped FFN's input.
void PermuteRowsToBf16(const float* in, int64_t in_stride, const int32_t* src_rows, int rows,
                       int cols, uint16_t* out, int64_t out_stride, cudaStream_t stream);

// kernels/unpermute_combine.h on the device.
void UnpermuteCombine(const float* in, int64_t in_stride, const int32_t* offsets,
                      const int32_t* rows, const float* weights, int out_rows, int cols, float* out,
                      int64_t out_stride, cudaStream_t stream);

// UnpermuteCombine over bfloat16 rows (the grouped FFN's output), summed in float32.
void UnpermuteCombineFromBf16(const uint16_t* in, int64_t in_stride, const int32_t* offsets,
                              const int32_t* rows, const float* weights, int out_rows, int cols,
                              float* out, int64_t out_stride, cudaStream_t stream);

// UnpermuteCombine that adds the sum to `out` (out[i] += sum, the sum formed first, as the CPU
// path's x += moe_out): the home rank's combine into the hidden states.
void UnpermuteCombineAdd(const float* in, int64_t in_stride, const int32_t* offsets,
                         const int32_t* rows, const float* weights, int out_rows, int cols,
                         float* out, int64_t out_stride, cudaStream_t stream);

// gate_up[i] = silu(gate_up[i]) * up[i] over n elements: the SwiGLU activation of the expert FFN.
void Swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream);

// Swiglu on bfloat16 elements (raw bits, kernels/bf16.h): computed in float32, rounded to nearest
// even once. Returns the launch's error (cudaGetLastError), cudaSuccess for n == 0.
cudaError_t SwigluBf16(uint16_t* gate, const uint16_t* up, int64_t n, cudaStream_t stream);

// kernels/load_stats.h Count() on the device: load [E], coactivation [E x E] (accumulated).
void CountLoads(const int32_t* expert_ids, const int64_t* token_ids, int tokens, int top_k,
                int experts, int sample_every, unsigned long long* load,
                unsigned long long* coactivation, cudaStream_t stream);

}  // namespace grace::cuda
