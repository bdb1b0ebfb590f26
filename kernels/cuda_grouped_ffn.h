// CudaGroupedFfn: the SwiGLU expert FFN of all of a rank's local slots on one CUDA device, with
// the weights resident in bfloat16 and float32 accumulation.
//
//   GRACE_ASSIGN_OR_RETURN(auto ffn, CudaGroupedFfn::Create(shape, layers, slots, /*device=*/0));
//   ffn->LoadSlot(layer, slot, w1, w3, w2);     // float32 host weights, converted to bf16 once
//   ffn->Enqueue(layer, slot_row_offsets, x, y);  // bf16 rows on the device in and out
//   ffn->StageSlot(layer, physical, weights);   // another thread: upload into a spare slot
//   ffn->FinishStaging();                       // ... and wait for it (an event)
//   ffn->UseSlotMap(map);                       // the owner: later Enqueues read the new map
//   ffn->SlotWeights(layer, physical);          // device pointers, for the NCCL migration path
//
// Enqueue issues, on the FFN's stream and without synchronising it, one
// cublasGemmGroupedBatchedEx call per projection (gate W1, up W3, down W2), each holding one
// problem per non-empty slot, with the bf16 SwiGLU kernel between the first two and the third.
// cuBLAS's grouped GEMM takes bf16 A/B/C with CUBLAS_COMPUTE_32F and float32 alpha/beta; C must
// be bf16, so the gate and up activations are rounded to bf16 before SwiGLU.
//
// Each layer holds local_slots + spare_slots physical slots on the device; Enqueue reads, for
// each logical slot, the physical slot the current slot map (kernels/slot_map.h) names. A
// migration uploads new weights into spare physical slots on a separate copy stream.
//
// hidden and ffn must be multiples of 8, so every row block starts 16-byte aligned as cuBLAS
// asks of bf16 pointers. Thread contract: one thread owns the object and calls LoadSlot,
// UseSlotMap, Enqueue and the rest; LoadSlot must not overlap work still queued for the same
// slot (it synchronises the stream itself). One staging thread at a time may call StageSlot and
// FinishStaging concurrently with the owner, for physical slots the current map does not name
// (the caller's pool guarantees it); the copy stream first waits for the compute work queued
// before the last UseSlotMap, which may still read a slot released since.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cuda_device.h"
#include "kernels/model_shape.h"
#include "kernels/slot_map.h"

namespace grace {

// One physical slot's weights on the device: w1, w3, w2, each `elements` bf16 values.
struct DeviceSlotWeights {
  uint16_t* part[3] = {nullptr, nullptr, nullptr};
  size_t elements = 0;
};

class CudaGroupedFfn {
 public:
  // Fails with InvalidArgument on a shape cuBLAS cannot take, Unavailable without a device.
  static StatusOr<std::unique_ptr<CudaGroupedFfn>> Create(const ModelShape& shape, int num_layers,
                                                          int local_slots, int device,
                                                          int spare_slots = 0);
  ~CudaGroupedFfn();
  CudaGroupedFfn(const CudaGroupedFfn&) = delete;
  CudaGroupedFfn& operator=(const CudaGroupedFfn&) = delete;

  cudaStream_t stream() const { return stream_; }
  // Makes this FFN's device current on the calling thread.
  Status UseDevice() const;

  // w1, w3: [ffn x hidden]; w2: [hidden x ffn], float32 row-major host memory.
  Status LoadSlot(int layer_index, int local_slot, const float* w1, const float* w3,
                  const float* w2);

  // Staging thread: queues the upload of weights (w1 | w3 | w2, float32 host memory, read before
  // it returns) into a physical slot on the copy stream.
  Status StageSlot(int layer_index, int physical_slot, const float* weights);
  // Staging thread: returns once every upload queued by StageSlot has landed.
  Status FinishStaging();
  // Owner thread: the next Enqueues read `map` (validated by the caller). Copies nothing.
  Status UseSlotMap(std::shared_ptr<const SlotMap> map);
  int physical_slots() const { return physical_slots_; }
  int local_slots() const { return local_slots_; }
  int device() const { return device_; }
  // bf16 values in each of a slot's three weight matrices (ffn x hidden).
  size_t SlotElements() const { return static_cast<size_t>(shape_.ffn) * shape_.hidden; }

  // Any thread: where a physical slot's weights live (fixed from Create on). Writing them is
  // the staging thread's, for a free slot only, on a stream that OrderAfterMapSwitch ordered.
  StatusOr<DeviceSlotWeights> SlotWeights(int layer_index, int physical_slot);
  // Staging thread: later work on `stream` waits for the compute work queued before the last
  // UseSlotMap, which may still read a slot released since (StageSlot's copy stream does the
  // same before each upload).
  Status OrderAfterMapSwitch(cudaStream_t stream);

  // x, y: [rows x hidden] bf16 device memory, rows = slot_row_offsets[local_slots] (a host array
  // of local_slots + 1 non-decreasing offsets from 0). Slot s's rows are
  // [slot_row_offsets[s], slot_row_offsets[s + 1]). Only queues work on stream().
  Status Enqueue(int layer_index, const int32_t* slot_row_offsets, const uint16_t* x, uint16_t* y);

  // 6 * rows * hidden * ffn: the FFN's floating-point operations over `rows` rows.
  double Flops(int64_t rows) const;

 private:
  CudaGroupedFfn(const ModelShape& shape, int num_layers, int local_slots, int spare_slots,
                 int device);
  Status Init();
  // One projection: C[k] = A[k] * B[k] for the `groups` problems whose pointers sit in the device
  // table at `a`, `b`, `c` (row-major y = x W^T as column-major op(A) = W^T).
  Status GroupedGemm(int m, int k, int groups, int table_a, int table_b, int table_c,
                     const char* what);

  ModelShape shape_;
  int num_layers_;
  int local_slots_;
  int physical_slots_;  // local + spare, per layer
  int device_;
  std::shared_ptr<const SlotMap> map_;  // the owner's; identity at first
  cudaStream_t stream_ = nullptr;
  cublasHandle_t handle_ = nullptr;
  cudaEvent_t table_copied_ = nullptr;  // the last pointer-table upload has read the pinned table
  DeviceArray<uint16_t> w1_, w3_, w2_;  // [layer][physical slot][ffn * hidden], bf16
  DeviceArray<uint16_t> gate_, up_;     // [rows x ffn] scratch, bf16
  PinnedArray<uint16_t> weight_staging_;
  // The staging thread's: its stream, two pinned halves (one slot each, so the conversion of
  // the next slot overlaps the upload of the last), an event per half, and the event
  // FinishStaging waits on. map_switched_ is recorded on stream_ at each UseSlotMap.
  cudaStream_t copy_stream_ = nullptr;
  PinnedArray<uint16_t> upload_staging_;
  cudaEvent_t upload_done_[2] = {nullptr, nullptr};
  int next_half_ = 0;
  cudaEvent_t staged_ = nullptr;
  cudaEvent_t map_switched_ = nullptr;
  // Pointer table: 9 arrays of local_slots pointers (A, B, C for gate, up, down), host and device.
  PinnedArray<void*> table_host_;
  DeviceArray<void*> table_device_;
  // Per-group arguments (group_count <= local_slots), allocated once.
  std::vector<cublasOperation_t> trans_a_, trans_b_;
  std::vector<int> m_, n_, k_, lda_, ldb_, ldc_, group_size_;
  std::vector<float> alpha_, beta_;
};

}  // namespace grace
