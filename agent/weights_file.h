// Expert weights in a safetensors checkpoint, with Hugging Face's MoE tensor names (Qwen-MoE,
// Mixtral-style), for each MoE layer L (the model's layer number) and expert e:
//   model.layers.L.mlp.gate.weight                       [experts, hidden]
//   model.layers.L.mlp.experts.e.gate_proj.weight (w1)   [ffn, hidden]
//   model.layers.L.mlp.experts.e.up_proj.weight   (w3)   [ffn, hidden]
//   model.layers.L.mlp.experts.e.down_proj.weight (w2)   [hidden, ffn]
// A tensor that is missing or whose shape does not match the configured model fails, naming it.
#pragma once

#include <string>
#include <vector>

#include "core/ids.h"
#include "core/status.h"
#include "kernels/expert_weights.h"

namespace grace {

StatusOr<ExpertWeights> LoadExpertWeightsFile(const std::string& path, const ModelShape& shape,
                                              const std::vector<LayerId>& layer_ids);
Status WriteExpertWeightsFile(const std::string& path, const ExpertWeights& weights,
                              const std::vector<LayerId>& layer_ids);

}  // namespace grace
