#include "kernels/cuda/device_routing_table.h"

#include <vector>

namespace grace {

Status DeviceRoutingTable::Upload(const RoutingTable& table, cudaStream_t stream) {
  ranks_ = table.topology().ranks();
  experts_ = table.num_experts();
  std::vector<uint32_t> offset, count;
  std::vector<int32_t> slot;
  std::vector<float> cumulative;
  for (int l = 0; l < table.num_layers(); ++l) {
    for (RankId r = 0; r < ranks_; ++r) {
      for (ExpertId e = 0; e < experts_; ++e) {
        auto c = table.Candidates(l, r, e);
        offset.push_back(static_cast<uint32_t>(slot.size()));
        count.push_back(static_cast<uint32_t>(c.size()));
        for (const RouteCandidate& rc : c) {
          slot.push_back(rc.slot);
          cumulative.push_back(rc.cumulative_weight);
        }
      }
    }
  }
  GRACE_RETURN_IF_ERROR(offset_.Upload(offset.data(), offset.size(), stream));
  GRACE_RETURN_IF_ERROR(count_.Upload(count.data(), count.size(), stream));
  GRACE_RETURN_IF_ERROR(slot_.Upload(slot.data(), slot.size(), stream));
  GRACE_RETURN_IF_ERROR(cumulative_.Upload(cumulative.data(), cumulative.size(), stream));
  return CudaStatus(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

cuda::RoutingView DeviceRoutingTable::view() const {
  return {offset_.data(), count_.data(), slot_.data(), cumulative_.data(), ranks_, experts_};
}

}  // namespace grace
