// ModelShape: the MoE layer dimensions the data path runs (experts, top-k, hidden, ffn, layers).
//
// A plain value read from agent.toml [model] and checked against the weights file.
#pragma once

#include <string>

#include "core/status.h"

namespace grace {

struct ModelShape {
  int num_experts = 8;
  int top_k = 2;
  int hidden = 64;
  int ffn = 32;
  int num_layers = 1;

  Status Validate() const {
    if (num_experts < 1) return InvalidArgument("model: num_experts must be >= 1");
    if (top_k < 1 || top_k > num_experts || top_k > 32) {
      return InvalidArgument("model: top_k must be in [1, min(num_experts, 32)], got " +
                             std::to_string(top_k));
    }
    if (hidden < 1 || ffn < 1 || num_layers < 1) {
      return InvalidArgument("model: hidden, ffn and layers must be >= 1");
    }
    return Status::Ok();
  }
};

}  // namespace grace
