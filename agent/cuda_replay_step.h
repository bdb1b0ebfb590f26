// RunCudaReplayStep: one replay step of one rank through its device-resident MoE layers
// (agent/cuda_moe_layer.h), the [agent].backend = "cuda" twin of the CPU layer loop in
// agent/replay.cc: the routing of every layer comes from the trace (uploaded once for the step)
// or from the gate on the device; x goes to the device once and comes back once; the live
// counters get the same ids, counts and measured dispatch as on the CPU path.
//
// Thread contract: the rank's worker thread, which owns `layer` and `progress`'s counters.
#pragma once

#include <cstdint>
#include <vector>

#include "agent/cuda_moe_layer.h"
#include "agent/serving_state.h"
#include "core/trace.h"

namespace grace {

// token_rows: the rank's rows of `batch` (null batch: the gate routes); x [tokens x hidden] is
// updated in place. ids and gate_weights are scratch the caller keeps between steps.
Status RunCudaReplayStep(CudaMoeLayer& layer, const RoutingTable& table, const ModelShape& shape,
                         const TokenBatch* batch, const std::vector<int32_t>& token_rows,
                         const std::vector<int64_t>& token_ids, uint64_t step, uint64_t route_seed,
                         RankProgress& progress, std::vector<float>& x, std::vector<int32_t>& ids,
                         std::vector<float>& gate_weights, StepTimes* times);

}  // namespace grace
