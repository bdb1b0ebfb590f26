#include "kernels/select_replicas.h"

#include "kernels/route_hash.h"

namespace grace {

void SelectReplicas(const RoutingTable& table, int layer_index, RankId rank,
                    const int32_t* expert_ids, const int64_t* token_ids, int tokens, int top_k,
                    uint64_t seed, uint64_t step, SlotId* slots) {
  const uint64_t step_seed = HashCombine(seed, step);
  for (int t = 0; t < tokens; ++t) {
    const uint64_t token_seed = step_seed;
    for (int k = 0; k < top_k; ++k) {
      const int i = t * top_k + k;
      // Same draw as RouteUniform(), with the step hash hoisted out of the loop.
      uint64_t h = HashCombine(
          token_seed, static_cast<uint64_t>(token_ids[t]) * 64u + static_cast<uint64_t>(k));
      h = HashCombine(h, static_cast<uint64_t>(layer_index));
      slots[i] = table.Choose(layer_index, rank, expert_ids[i], HashToUnit(h));
    }
  }
}

}  // namespace grace
