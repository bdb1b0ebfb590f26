// The CUDA expert backend: the twin of the CPU backend (kernels/expert_backend.h) on one device.
// Slot weights are resident in bfloat16 (converted once, at LoadSlot or StageSlot); Run converts
// the float32 rows to bf16 into pinned host memory, copies them in, runs the grouped FFN of all
// local slots (kernels/cuda_grouped_ffn.h: one grouped GEMM per projection, float32
// accumulation), copies the bf16 outputs back and widens them to float32. The one stream
// synchronisation per Run is where the agent's CPU path needs the result. Results match the CPU
// backend to bf16 accuracy, not bit for bit.
//
// Spare slots are device memory (local + spare physical slots per layer): StageSlot uploads a
// migration's weights into one on a copy stream separate from Run's, FinishStaging waits for an
// event recorded after them (before the rank reports READY), and the switch only publishes the
// slot map.
//
// Thread contract as for every ExpertBackend: one data-path thread, one staging thread.
#pragma once

#include <memory>

#include "kernels/expert_backend.h"

namespace grace {

class CudaGroupedFfn;

// Fails (naming the cause) when no CUDA device can be used, or when hidden or ffn is not a
// multiple of 8.
StatusOr<std::unique_ptr<ExpertBackend>> MakeCudaExpertBackend(const ModelShape& shape,
                                                               int num_layers, int local_slots,
                                                               int device, int spare_slots = 0);

// The grouped FFN a backend made by MakeCudaExpertBackend runs on (owned by the backend), null
// for any other backend: the device-resident MoE layer (agent/cuda_moe_layer.h) queues its FFN
// there, while LoadSlot and AdoptSlot keep going through the backend.
CudaGroupedFfn* CudaGroupedFfnOf(ExpertBackend& backend);

// The NCCL migration path (agent/device_migration_executor.h): takes a free physical slot of
// the layer without writing it. The caller receives the new weights into it itself (its
// CudaGroupedFfn::SlotWeights, on a stream ordered by OrderAfterMapSwitch), waits for the writes
// to land, and returns the slot with ReleaseSlot if the migration is dropped. The staging
// thread's, like StageSlot. Fails for a backend MakeCudaExpertBackend did not make, and when no
// spare is free.
StatusOr<int> AcquireCudaSpareSlot(ExpertBackend& backend, int layer_index);

}  // namespace grace
