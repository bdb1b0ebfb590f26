// The CUDA expert backend: slot weights live on one device; Run copies the grouped rows in,
// runs per slot two cuBLAS SGEMMs, the Swiglu kernel and a third SGEMM on the backend's own
// stream, and copies the outputs back. The twin of the CPU backend (kernels/expert_backend.h).
//
// Thread contract as for every ExpertBackend: one data-path thread.
#pragma once

#include <memory>

#include "kernels/expert_backend.h"

namespace grace {

// Fails (naming the cause) when no CUDA device can be used.
StatusOr<std::unique_ptr<ExpertBackend>> MakeCudaExpertBackend(const ModelShape& shape,
                                                               int num_layers, int local_slots,
                                                               int device);

}  // namespace grace
