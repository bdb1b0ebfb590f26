// The small integer ids grace passes around. Plain aliases keep hot loops and wire formats
// simple; the names say which space a value lives in.
#pragma once

#include <cstdint>

namespace grace {

using ExpertId = int32_t;  // logical expert within one layer, [0, num_experts)
using SlotId = int32_t;  // physical slot, [0, ranks * slots_per_rank); rank = slot / slots_per_rank
using RankId =
    int32_t;  // GPU (or CPU rank), [0, nodes * gpus_per_node); node = rank / gpus_per_node
using NodeId = int32_t;
using LayerId = int32_t;  // the model's own layer number (DeepSeek-V3 MoE layers are 3..60)
using Epoch = uint64_t;   // routing-table generation; only grows

inline constexpr ExpertId kEmptySlot = -1;

}  // namespace grace
