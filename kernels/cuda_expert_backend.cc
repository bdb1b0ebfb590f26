#include "kernels/cuda_expert_backend.h"

#include <string>

#include "kernels/bf16.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_grouped_ffn.h"

namespace grace {
namespace {

class CudaExpertBackend final : public ExpertBackend {
 public:
  CudaExpertBackend(const ModelShape& shape, int num_layers, int local_slots, int spare_slots,
                    std::unique_ptr<CudaGroupedFfn> ffn)
      : shape_(shape),
        num_layers_(num_layers),
        local_slots_(local_slots),
        pool_(num_layers, local_slots, spare_slots),
        ffn_(std::move(ffn)) {}

  const char* name() const override { return "cuda"; }
  CudaGroupedFfn* ffn() const { return ffn_.get(); }

  Status LoadSlot(int layer_index, int local_slot, const float* w1, const float* w3,
                  const float* w2) override {
    return ffn_->LoadSlot(layer_index, local_slot, w1, w3, w2);
  }

  StatusOr<int> StageSlot(int layer_index,
                          std::shared_ptr<const std::vector<float>> weights) override {
    const size_t n = static_cast<size_t>(shape_.ffn) * shape_.hidden;
    if (layer_index < 0 || layer_index >= num_layers_ || weights == nullptr ||
        weights->size() != 3 * n) {
      return InvalidArgument("cuda expert backend: cannot stage " +
                             std::to_string(weights ? weights->size() : 0) + " floats into layer " +
                             std::to_string(layer_index) + " (want 3 x " + std::to_string(n) + ")");
    }
    GRACE_ASSIGN_OR_RETURN(const int p, pool_.Acquire(layer_index));
    if (Status s = ffn_->StageSlot(layer_index, p, weights->data()); !s.ok()) {
      (void)pool_.Release(layer_index, p);
      return s;
    }
    return p;
  }

  StatusOr<int> AcquireSpare(int layer_index) { return pool_.Acquire(layer_index); }

  Status FinishStaging() override { return ffn_->FinishStaging(); }

  Status UseSlotMap(std::shared_ptr<const SlotMap> map) override {
    if (map == nullptr) return InvalidArgument("cuda expert backend: null slot map");
    GRACE_RETURN_IF_ERROR(map->Validate(num_layers_, local_slots_, pool_.physical_slots()));
    return ffn_->UseSlotMap(std::move(map));
  }

  Status ReleaseSlot(int layer_index, int physical_slot) override {
    return pool_.Release(layer_index, physical_slot);
  }

  int free_slots(int layer_index) const override { return pool_.free_slots(layer_index); }

  Status Run(int layer_index, const float* input, const int32_t* slot_row_offsets,
             float* output) override {
    const int64_t rows = slot_row_offsets[local_slots_];
    if (rows <= 0) return ffn_->Enqueue(layer_index, slot_row_offsets, nullptr, nullptr);
    const size_t n = static_cast<size_t>(rows) * shape_.hidden;
    Status status = Stage(layer_index, input, slot_row_offsets, n);
    // Even after an error, wait for what was queued: it reads the pinned buffers the next Run
    // rewrites.
    const Status sync =
        CudaStatus(cudaStreamSynchronize(ffn_->stream()), "cudaStreamSynchronize after Run");
    GRACE_RETURN_IF_ERROR(status);
    GRACE_RETURN_IF_ERROR(sync);
    Bf16ToFloats(host_out_.data(), n, output);
    return Status::Ok();
  }

 private:
  // Queues copy in, FFN, copy out; no synchronisation.
  Status Stage(int layer_index, const float* input, const int32_t* slot_row_offsets, size_t n) {
    GRACE_RETURN_IF_ERROR(ffn_->UseDevice());
    // Growing frees buffers; the previous Run synchronised, so nothing still uses them.
    GRACE_RETURN_IF_ERROR(host_in_.Resize(n));
    GRACE_RETURN_IF_ERROR(host_out_.Resize(n));
    GRACE_RETURN_IF_ERROR(x_.Resize(n));
    GRACE_RETURN_IF_ERROR(y_.Resize(n));
    FloatsToBf16(input, n, host_in_.data());
    GRACE_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpyAsync(x_.data(), host_in_.data(), n * sizeof(uint16_t),
                                   cudaMemcpyHostToDevice, ffn_->stream()),
                   "cudaMemcpyAsync rows to device"));
    GRACE_RETURN_IF_ERROR(ffn_->Enqueue(layer_index, slot_row_offsets, x_.data(), y_.data()));
    return CudaStatus(cudaMemcpyAsync(host_out_.data(), y_.data(), n * sizeof(uint16_t),
                                      cudaMemcpyDeviceToHost, ffn_->stream()),
                      "cudaMemcpyAsync rows to host");
  }

  ModelShape shape_;
  int num_layers_;
  int local_slots_;
  SlotPool pool_;
  std::unique_ptr<CudaGroupedFfn> ffn_;
  PinnedArray<uint16_t> host_in_, host_out_;  // [rows x hidden] bf16 staging
  DeviceArray<uint16_t> x_, y_;               // [rows x hidden] bf16 on the device
};

}  // namespace

CudaGroupedFfn* CudaGroupedFfnOf(ExpertBackend& backend) {
  auto* cuda = dynamic_cast<CudaExpertBackend*>(&backend);
  return cuda == nullptr ? nullptr : cuda->ffn();
}

StatusOr<int> AcquireCudaSpareSlot(ExpertBackend& backend, int layer_index) {
  auto* cuda = dynamic_cast<CudaExpertBackend*>(&backend);
  if (cuda == nullptr) {
    return FailedPrecondition(
        std::string("a device spare slot needs the cuda expert backend, not ") + backend.name());
  }
  return cuda->AcquireSpare(layer_index);
}

StatusOr<std::unique_ptr<ExpertBackend>> MakeCudaExpertBackend(const ModelShape& shape,
                                                               int num_layers, int local_slots,
                                                               int device, int spare_slots) {
  GRACE_ASSIGN_OR_RETURN(
      std::unique_ptr<CudaGroupedFfn> ffn,
      CudaGroupedFfn::Create(shape, num_layers, local_slots, device, spare_slots));
  return std::unique_ptr<ExpertBackend>(std::make_unique<CudaExpertBackend>(
      shape, num_layers, local_slots, spare_slots, std::move(ffn)));
}

}  // namespace grace
