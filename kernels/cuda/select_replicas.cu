// SelectReplicas on the device: one thread per (token, k), the same draw as the CPU twin.
#include "kernels/cuda/launchers.h"
#include "kernels/route_hash.h"

namespace grace::cuda {
namespace {

template <typename Index>
__global__ void SelectReplicasKernel(RoutingView table, int layer_index, int rank,
                                     const int32_t* expert_ids, const int64_t* token_ids,
                                     Index pairs, int top_k, uint64_t seed, uint64_t step,
                                     int32_t* slots) {
  const Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= pairs) return;
  const Index t = i / top_k;
  const int k = static_cast<int>(i % top_k);
  const float u = RouteUniform(seed, step, layer_index, token_ids[t], k);
  const int64_t entry =
      (static_cast<int64_t>(layer_index) * table.ranks + rank) * table.experts + expert_ids[i];
  const uint32_t offset = table.entry_offset[entry], count = table.entry_count[entry];
  uint32_t c = 0;
  while (c + 1 < count && u >= table.candidate_cumulative[offset + c]) ++c;
  slots[i] = table.candidate_slot[offset + c];
}

}  // namespace

void SelectReplicas(RoutingView table, int layer_index, int rank, const int32_t* expert_ids,
                    const int64_t* token_ids, int tokens, int top_k, uint64_t seed, uint64_t step,
                    int32_t* slots, cudaStream_t stream) {
  const int64_t pairs = static_cast<int64_t>(tokens) * top_k;
  if (pairs == 0) return;
  const int threads = 256;
  SelectReplicasKernel<int64_t>
      <<<static_cast<unsigned>((pairs + threads - 1) / threads), threads, 0, stream>>>(
          table, layer_index, rank, expert_ids, token_ids, pairs, top_k, seed, step, slots);
}

}  // namespace grace::cuda
