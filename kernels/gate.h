// Gate: softmax over the router logits, then the top-k experts of each token.
//
//   GateTopK(hidden, gate_weight, tokens, hidden_size, experts, top_k, ids, weights);
//
// hidden is [tokens x hidden_size], gate_weight [experts x hidden_size] (row-major). ids and
// weights are [tokens x top_k], best first; weights are the softmax probabilities, not
// renormalised over the top k (Qwen1.5-MoE's norm_topk_prob = false). Ties go to the lower id.
// The CUDA twin is kernels/cuda/gate_topk.cu. Pure function; any thread.
#pragma once

#include <cstdint>

namespace grace {

void GateTopK(const float* hidden, const float* gate_weight, int tokens, int hidden_size,
              int experts, int top_k, int32_t* ids, float* weights);

}  // namespace grace
