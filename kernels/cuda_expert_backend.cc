#include "kernels/cuda_expert_backend.h"

#include <vector>

#include "kernels/cuda/launchers.h"
#include "kernels/cuda_device.h"

namespace grace {
namespace {

class CudaExpertBackend final : public ExpertBackend {
 public:
  CudaExpertBackend(const ModelShape& shape, int num_layers, int local_slots)
      : shape_(shape), num_layers_(num_layers), local_slots_(local_slots) {}
  ~CudaExpertBackend() override {
    if (handle_ != nullptr) cublasDestroy(handle_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  Status Init(int device) {
    GRACE_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));
    GRACE_RETURN_IF_ERROR(
        CudaStatus(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
    GRACE_RETURN_IF_ERROR(CublasStatus(cublasCreate(&handle_), "cublasCreate"));
    GRACE_RETURN_IF_ERROR(CublasStatus(cublasSetStream(handle_, stream_), "cublasSetStream"));
    // Plain FP32 math, so results stay within tolerance of the CPU twin.
    GRACE_RETURN_IF_ERROR(
        CublasStatus(cublasSetMathMode(handle_, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode"));
    const size_t n = SlotElements() * local_slots_ * num_layers_;
    GRACE_RETURN_IF_ERROR(w1_.Resize(n));
    GRACE_RETURN_IF_ERROR(w3_.Resize(n));
    GRACE_RETURN_IF_ERROR(w2_.Resize(n));
    return Status::Ok();
  }

  const char* name() const override { return "cuda"; }

  Status LoadSlot(int layer_index, int local_slot, const float* w1, const float* w3,
                  const float* w2) override {
    if (layer_index < 0 || layer_index >= num_layers_ || local_slot < 0 ||
        local_slot >= local_slots_) {
      return InvalidArgument("cuda expert backend: no slot " + std::to_string(local_slot) +
                             " in layer " + std::to_string(layer_index));
    }
    const size_t n = SlotElements(), at = n * (layer_index * local_slots_ + local_slot);
    for (auto [dst, src] : {std::pair{&w1_, w1}, std::pair{&w3_, w3}, std::pair{&w2_, w2}}) {
      GRACE_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(dst->data() + at, src, n * sizeof(float),
                                                       cudaMemcpyHostToDevice, stream_),
                                       "cudaMemcpyAsync weights"));
    }
    return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  Status Run(int layer_index, const float* input, const int32_t* slot_row_offsets,
             float* output) override {
    const int h = shape_.hidden, f = shape_.ffn;
    const int rows = slot_row_offsets[local_slots_];
    GRACE_RETURN_IF_ERROR(x_.Upload(input, static_cast<size_t>(rows) * h, stream_));
    GRACE_RETURN_IF_ERROR(y_.Resize(static_cast<size_t>(rows) * h));
    GRACE_RETURN_IF_ERROR(g_.Resize(static_cast<size_t>(rows) * f));
    GRACE_RETURN_IF_ERROR(u_.Resize(static_cast<size_t>(rows) * f));
    const float one = 1.0f, zero = 0.0f;
    for (int s = 0; s < local_slots_; ++s) {
      const int begin = slot_row_offsets[s], n = slot_row_offsets[s + 1] - begin;
      if (n == 0) continue;
      const size_t at = SlotElements() * (layer_index * local_slots_ + s);
      const float* x = x_.data() + static_cast<int64_t>(begin) * h;
      float* g = g_.data() + static_cast<int64_t>(begin) * f;
      float* u = u_.data() + static_cast<int64_t>(begin) * f;
      float* y = y_.data() + static_cast<int64_t>(begin) * h;
      // Row-major y = x W^T is column-major y^T = W x^T: op(A) = T on the row-major weight.
      GRACE_RETURN_IF_ERROR(CublasStatus(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, f, n, h,
                                                     &one, w1_.data() + at, h, x, h, &zero, g, f),
                                         "cublasSgemm w1"));
      GRACE_RETURN_IF_ERROR(CublasStatus(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, f, n, h,
                                                     &one, w3_.data() + at, h, x, h, &zero, u, f),
                                         "cublasSgemm w3"));
      cuda::Swiglu(g, u, static_cast<int64_t>(n) * f, stream_);
      GRACE_RETURN_IF_ERROR(CublasStatus(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, h, n, f,
                                                     &one, w2_.data() + at, f, g, f, &zero, y, h),
                                         "cublasSgemm w2"));
    }
    GRACE_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "swiglu launch"));
    GRACE_RETURN_IF_ERROR(y_.Download(output, static_cast<size_t>(rows) * h, stream_));
    return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

 private:
  size_t SlotElements() const { return static_cast<size_t>(shape_.ffn) * shape_.hidden; }

  ModelShape shape_;
  int num_layers_;
  int local_slots_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t handle_ = nullptr;
  DeviceArray<float> w1_, w3_, w2_;  // [layer][slot][ffn * hidden]
  DeviceArray<float> x_, g_, u_, y_;
};

}  // namespace

StatusOr<std::unique_ptr<ExpertBackend>> MakeCudaExpertBackend(const ModelShape& shape,
                                                               int num_layers, int local_slots,
                                                               int device) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) return Unavailable("cuda expert backend: " + why);
  auto backend = std::make_unique<CudaExpertBackend>(shape, num_layers, local_slots);
  GRACE_RETURN_IF_ERROR(backend->Init(device));
  return std::unique_ptr<ExpertBackend>(std::move(backend));
}

}  // namespace grace
