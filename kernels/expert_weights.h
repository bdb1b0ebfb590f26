// ExpertWeights: every expert's SwiGLU weights and the gate of each MoE layer, in float32.
//
// Layout per layer (row-major, the nn.Linear convention out x in):
//   gate [E x hidden]; w1 (gate_proj) and w3 (up_proj) [E][ffn x hidden]; w2 (down_proj)
//   [E][hidden x ffn].
// Built either from a seed (GenerateExpertWeights) or from a safetensors checkpoint
// (agent/weights_file.h). A plain value; read-only once built, so any thread may read it.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/model_shape.h"

namespace grace {

struct ExpertWeights {
  ModelShape shape;
  std::vector<std::vector<float>> gate;  // [layer][E * hidden]
  std::vector<std::vector<float>> w1;    // [layer][E * ffn * hidden]
  std::vector<std::vector<float>> w3;    // [layer][E * ffn * hidden]
  std::vector<std::vector<float>> w2;    // [layer][E * hidden * ffn]

  // Allocates zeroed tensors for `shape`.
  static ExpertWeights Zeros(const ModelShape& shape);

  const float* W1(int layer, int expert) const {
    return w1[layer].data() + static_cast<size_t>(expert) * shape.ffn * shape.hidden;
  }
  const float* W3(int layer, int expert) const {
    return w3[layer].data() + static_cast<size_t>(expert) * shape.ffn * shape.hidden;
  }
  const float* W2(int layer, int expert) const {
    return w2[layer].data() + static_cast<size_t>(expert) * shape.hidden * shape.ffn;
  }
};

// Deterministic weights from `seed`: uniform in +-1/sqrt(fan_in), so activations stay O(1)
// through the layers. Same seed, same shape: bit-identical weights on every machine.
ExpertWeights GenerateExpertWeights(const ModelShape& shape, uint64_t seed);

}  // namespace grace
