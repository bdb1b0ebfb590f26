// ExpertBackend: where a rank's expert slots live and run (CPU with Eigen, or a CUDA device).
//
//   std::unique_ptr<ExpertBackend> b = MakeCpuExpertBackend(shape, layers, local_slots);
//   b->LoadSlot(layer, slot, w1, w3, w2);               // startup
//   b->AdoptSlot(layer, slot, staged);                  // a migration's switch
//   b->Run(layer, rows_in, slot_row_offsets, rows_out); // every step
//
// Run computes, for every local slot s, the SwiGLU expert FFN
//   y = (silu(x W1^T) * (x W3^T)) W2^T
// over its rows [slot_row_offsets[s], slot_row_offsets[s+1]) of `input` ([rows x hidden],
// host memory) into the same rows of `output`: a grouped GEMM over the slots. An empty slot
// (never loaded) must have no rows.
//
// Thread contract: one data-path thread per backend. LoadSlot and AdoptSlot must not run
// concurrently with Run on the same slot.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "kernels/model_shape.h"

namespace grace {

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;
  virtual const char* name() const = 0;
  // Copies one expert's weights (w1, w3: [ffn x hidden]; w2: [hidden x ffn]) into a slot.
  virtual Status LoadSlot(int layer_index, int local_slot, const float* w1, const float* w3,
                          const float* w2) = 0;
  // Points a slot at weights staged ahead (w1 | w3 | w2 back to back), shared with the caller:
  // a backend that reads host memory in place (CPU) adopts the buffer and copies nothing, so
  // a migration's switch costs a pointer per slot; the slot's old buffer is released. The
  // default copies it with LoadSlot (CUDA: the weights must reach the device).
  virtual Status AdoptSlot(int layer_index, int local_slot,
                           std::shared_ptr<const std::vector<float>> weights) {
    const size_t n = weights->size() / 3;
    return LoadSlot(layer_index, local_slot, weights->data(), weights->data() + n,
                    weights->data() + 2 * n);
  }
  virtual Status Run(int layer_index, const float* input, const int32_t* slot_row_offsets,
                     float* output) = 0;
};

// Eigen on the calling thread.
std::unique_ptr<ExpertBackend> MakeCpuExpertBackend(const ModelShape& shape, int num_layers,
                                                    int local_slots);

// The CUDA backend is MakeCudaExpertBackend in kernels/cuda_expert_backend.h (CUDA builds).

}  // namespace grace
