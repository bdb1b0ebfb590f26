// The single-process dense reference the distributed data path must match (lossless routing):
// every token runs every layer on the logical experts' weights directly, with no placement,
// routing or transport. Also the inputs both sides share: hidden states generated from
// (seed, token), since traces carry only routing.
#pragma once

#include <cstdint>
#include <vector>

#include "core/trace.h"
#include "kernels/expert_weights.h"

namespace grace {

// out[c] in [-1, 1), c < hidden: token `token`'s initial hidden state.
void GenerateHidden(uint64_t seed, int64_t token, int hidden, float* out);

// The expert ids and gate weights of `tokens` tokens (rows `token_rows` of `batch`) at one layer:
// from the batch (gate weights uniform 1/k when it has none). ids, weights: [tokens x k].
void TraceRouting(const TokenBatch& batch, int layer_index, int top_k, const int32_t* token_rows,
                  int tokens, int32_t* ids, float* weights);

// x [tokens x hidden] in place through every layer: x += sum_k w_k FFN_{e_k}(x). With `batch`
// (rows token_rows) the routing comes from it; with batch == nullptr the gate computes it.
void DenseForward(const ExpertWeights& weights, const TokenBatch* batch, const int32_t* token_rows,
                  int tokens, float* x);

}  // namespace grace
