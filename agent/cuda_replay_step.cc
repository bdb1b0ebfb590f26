#include "agent/cuda_replay_step.h"

#include <chrono>
#include <span>
#include <string>

#include "agent/dense_reference.h"
#include "agent/live_counters.h"

namespace grace {

Status RunCudaReplayStep(CudaMoeLayer& layer, const RoutingTable& table, const ModelShape& shape,
                         const TokenBatch* batch, const std::vector<int32_t>& token_rows,
                         const std::vector<int64_t>& token_ids, uint64_t step, uint64_t route_seed,
                         RankProgress& progress, std::vector<float>& x, std::vector<int32_t>& ids,
                         std::vector<float>& gate_weights, StepTimes* times) {
  const int n = static_cast<int>(token_ids.size()), k = shape.top_k;
  const size_t pairs = static_cast<size_t>(n) * k;
  if (batch != nullptr) {
    // Every layer's replayed routing, for one upload.
    const auto t0 = std::chrono::steady_clock::now();
    ids.resize(pairs * shape.num_layers);
    gate_weights.resize(ids.size());
    for (int li = 0; li < shape.num_layers; ++li) {
      TraceRouting(*batch, li, k, token_rows.data(), n, ids.data() + li * pairs,
                   gate_weights.data() + li * pairs);
    }
    times->gate += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  GRACE_RETURN_IF_ERROR(layer.BeginStep(table, token_ids.data(), n, x.data(),
                                        batch != nullptr ? ids.data() : nullptr,
                                        batch != nullptr ? gate_weights.data() : nullptr));
  for (int li = 0; li < shape.num_layers; ++li) {
    const Status run = layer.Run(li, step, route_seed, times);
    if (!run.ok()) return run.WithContext("layer " + std::to_string(li));
    const int32_t* layer_ids = layer.expert_ids();
    progress.live->CountCoactivation(li, layer_ids, token_ids.data(), n, k);
    std::atomic<uint32_t>* counts = progress.counts.get() + li * shape.num_experts;
    for (int32_t e : std::span(layer_ids, pairs)) counts[e].fetch_add(1, std::memory_order_relaxed);
    progress.live->AddDispatch(li, layer.measured());
  }
  return layer.EndStep(x.data());
}

}  // namespace grace
