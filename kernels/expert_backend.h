// ExpertBackend: where a rank's expert slots live and run (CPU with Eigen, or a CUDA device).
//
//   std::unique_ptr<ExpertBackend> b = MakeCpuExpertBackend(shape, layers, local_slots, spare);
//   b->LoadSlot(layer, slot, w1, w3, w2);                  // startup (data-path thread)
//   StatusOr<int> p = b->StageSlot(layer, weights);        // migration thread, before READY
//   b->FinishStaging();                                    // migration thread, before READY
//   b->UseSlotMap(next_map);                               // data path, the switch step
//   b->ReleaseSlot(layer, old_physical);                   // once every rank is past the switch
//   b->Run(layer, rows_in, slot_row_offsets, rows_out);    // data path, every step
//
// Run computes, for every local (logical) slot s, the SwiGLU expert FFN
//   y = (silu(x W1^T) * (x W3^T)) W2^T
// over its rows [slot_row_offsets[s], slot_row_offsets[s+1]) of `input` ([rows x hidden],
// host memory) into the same rows of `output`: a grouped GEMM over the slots, each reading the
// physical slot the published slot map (kernels/slot_map.h) names for it. An empty slot (never
// loaded) must have no rows.
//
// Slots: each layer has local_slots + spare_slots physical slots; the map starts as the
// identity and the spares free. A migration stages each new expert into a free physical slot
// (StageSlot) and waits for the writes to land (FinishStaging) before its rank reports READY;
// the switch step publishes the new map (UseSlotMap: a pointer swap, nothing copied); the
// physical slots the old map named go back to the pool (ReleaseSlot) once no step can read them.
//
// Thread contract: one data-path thread calls LoadSlot (before serving), UseSlotMap and Run.
// One staging thread at a time calls StageSlot and FinishStaging, concurrently with Run: it
// writes only free physical slots, which no published map names, and Run reads only the slots
// its published map names. ReleaseSlot and free_slots may be called from any thread (the pool
// has its own lock); a slot may be released only once the data path has published a map that
// no longer names it. A map passed to UseSlotMap may name only slots whose staging finished.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "kernels/model_shape.h"
#include "kernels/slot_map.h"

namespace grace {

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;
  virtual const char* name() const = 0;
  // Copies one expert's weights (w1, w3: [ffn x hidden]; w2: [hidden x ffn]) into the physical
  // slot the current map names for `local_slot`.
  virtual Status LoadSlot(int layer_index, int local_slot, const float* w1, const float* w3,
                          const float* w2) = 0;
  // Writes weights staged ahead (w1 | w3 | w2 back to back) into a free physical slot of the
  // layer and returns it. The CPU backend adopts the buffer (shared with the caller, no copy);
  // the CUDA backend queues the upload on its copy stream. Fails when no spare slot is free.
  virtual StatusOr<int> StageSlot(int layer_index,
                                  std::shared_ptr<const std::vector<float>> weights) = 0;
  // Returns once every StageSlot so far has landed (CUDA: an event on the copy stream).
  virtual Status FinishStaging() = 0;
  // The data path's switch: Run reads `map` from its next call on. Copies nothing.
  virtual Status UseSlotMap(std::shared_ptr<const SlotMap> map) = 0;
  // Returns a physical slot to the pool (a staged slot a migration dropped, or one an old map
  // named).
  virtual Status ReleaseSlot(int layer_index, int physical_slot) = 0;
  virtual int free_slots(int layer_index) const = 0;
  virtual Status Run(int layer_index, const float* input, const int32_t* slot_row_offsets,
                     float* output) = 0;
};

// Eigen on the calling thread. A spare slot costs a pointer (staged buffers are adopted).
std::unique_ptr<ExpertBackend> MakeCpuExpertBackend(const ModelShape& shape, int num_layers,
                                                    int local_slots, int spare_slots = 0);

// The CUDA backend is MakeCudaExpertBackend in kernels/cuda_expert_backend.h (CUDA builds).

}  // namespace grace
