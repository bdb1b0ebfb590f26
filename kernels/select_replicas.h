// SelectReplicas: the physical slot each (token, expert) pair of one rank uses, from the
// routing table's locality tiers and weights.
//
// For token t (global index token_ids[t]) and its k-th expert, the slot is
// table.Choose(layer, rank, expert, RouteUniform(seed, step, layer, token, k)): deterministic for
// a given seed, the same on every rank and on the GPU (kernels/cuda/select_replicas.cu).
// Reads the table only; any thread, no lock, no allocation.
#pragma once

#include <cstdint>

#include "core/routing_table.h"

namespace grace {

void SelectReplicas(const RoutingTable& table, int layer_index, RankId rank,
                    const int32_t* expert_ids, const int64_t* token_ids, int tokens, int top_k,
                    uint64_t seed, uint64_t step, SlotId* slots);

}  // namespace grace
