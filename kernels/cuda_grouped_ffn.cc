#include "kernels/cuda_grouped_ffn.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "kernels/bf16.h"
#include "kernels/cuda/launchers.h"

namespace grace {
namespace {

// Offsets into the pointer table, in units of local_slots pointers.
enum Table { kGateA, kGateB, kGateC, kUpA, kUpB, kUpC, kDownA, kDownB, kDownC, kTableArrays };

}  // namespace

StatusOr<std::unique_ptr<CudaGroupedFfn>> CudaGroupedFfn::Create(const ModelShape& shape,
                                                                 int num_layers, int local_slots,
                                                                 int device, int spare_slots) {
  if (shape.hidden < 8 || shape.ffn < 8 || shape.hidden % 8 != 0 || shape.ffn % 8 != 0) {
    return InvalidArgument("cuda expert backend: hidden (" + std::to_string(shape.hidden) +
                           ") and ffn (" + std::to_string(shape.ffn) +
                           ") must be multiples of 8 for cuBLAS's bf16 grouped GEMM");
  }
  if (num_layers < 1 || local_slots < 1 || spare_slots < 0) {
    return InvalidArgument(
        "cuda expert backend: needs at least one layer and one slot, and spare slots >= 0");
  }
  std::string why;
  if (!CudaDeviceAvailable(&why)) return Unavailable("cuda expert backend: " + why);
  std::unique_ptr<CudaGroupedFfn> ffn(
      new CudaGroupedFfn(shape, num_layers, local_slots, spare_slots, device));
  GRACE_RETURN_IF_ERROR(ffn->Init());
  return ffn;
}

CudaGroupedFfn::CudaGroupedFfn(const ModelShape& shape, int num_layers, int local_slots,
                               int spare_slots, int device)
    : shape_(shape),
      num_layers_(num_layers),
      local_slots_(local_slots),
      physical_slots_(local_slots + spare_slots),
      device_(device),
      map_(std::make_shared<const SlotMap>(SlotMap::Identity(num_layers, local_slots))) {}

CudaGroupedFfn::~CudaGroupedFfn() {
  // The handle, streams and events are this device's: another thread's or test's current device
  // must not be the one they are destroyed on.
  cudaSetDevice(device_);
  // Queued work may still read the buffers the members free next.
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  for (cudaEvent_t e : {table_copied_, upload_done_[0], upload_done_[1], staged_, map_switched_}) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
  if (handle_ != nullptr) cublasDestroy(handle_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Status CudaGroupedFfn::UseDevice() const {
  return CudaStatus(cudaSetDevice(device_), "cudaSetDevice");
}

Status CudaGroupedFfn::Init() {
  GRACE_RETURN_IF_ERROR(UseDevice());
  GRACE_RETURN_IF_ERROR(CreateStream(StreamPriority::kDataPath, &stream_));
  GRACE_RETURN_IF_ERROR(CreateStream(StreamPriority::kBackground, &copy_stream_));
  for (cudaEvent_t* e :
       {&table_copied_, &upload_done_[0], &upload_done_[1], &staged_, &map_switched_}) {
    GRACE_RETURN_IF_ERROR(
        CudaStatus(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "cudaEventCreate"));
  }
  GRACE_RETURN_IF_ERROR(CublasStatus(cublasCreate(&handle_), "cublasCreate"));
  GRACE_RETURN_IF_ERROR(CublasStatus(cublasSetStream(handle_, stream_), "cublasSetStream"));
  // alpha and beta are host arrays: the grouped GEMM refuses CUBLAS_POINTER_MODE_DEVICE.
  GRACE_RETURN_IF_ERROR(CublasStatus(cublasSetPointerMode(handle_, CUBLAS_POINTER_MODE_HOST),
                                     "cublasSetPointerMode"));
  const size_t n = SlotElements() * physical_slots_ * num_layers_;
  // The weights are the device's largest allocation by far: a model that does not fit is named
  // with what to change, not left to cudaMalloc's "out of memory".
  size_t free_bytes = 0, total_bytes = 0;
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  if (const size_t weight_bytes = 3 * n * sizeof(uint16_t); weight_bytes > free_bytes) {
    auto gib = [](size_t bytes) {
      char text[32];
      std::snprintf(text, sizeof text, "%.1f GiB", bytes / double(1ull << 30));
      return std::string(text);
    };
    return FailedPrecondition(
        "cuda expert backend: device " + std::to_string(device_) + " has " + gib(free_bytes) +
        " free of " + gib(total_bytes) + "; the bf16 weights of " + std::to_string(num_layers_) +
        " layers x (" + std::to_string(local_slots_) + " local + " +
        std::to_string(physical_slots_ - local_slots_) + " spare) slots need " + gib(weight_bytes) +
        ": lower [migration].spare_slots or [cluster].slots_per_rank");
  }
  for (DeviceArray<uint16_t>* w : {&w1_, &w3_, &w2_}) {
    GRACE_RETURN_IF_ERROR(w->Resize(n));
    // A never-loaded slot holds zeros, as in the CPU backend.
    GRACE_RETURN_IF_ERROR(CudaStatus(cudaMemsetAsync(w->data(), 0, n * sizeof(uint16_t), stream_),
                                     "cudaMemsetAsync weights"));
  }
  GRACE_RETURN_IF_ERROR(weight_staging_.Resize(3 * SlotElements()));
  if (physical_slots_ > local_slots_) {
    GRACE_RETURN_IF_ERROR(upload_staging_.Resize(2 * 3 * SlotElements()));
  }
  GRACE_RETURN_IF_ERROR(table_host_.Resize(kTableArrays * static_cast<size_t>(local_slots_)));
  // Entries past the groups in use are uploaded but never read; zero them all the same.
  std::fill(table_host_.data(), table_host_.data() + table_host_.capacity(), nullptr);
  GRACE_RETURN_IF_ERROR(table_device_.Resize(kTableArrays * static_cast<size_t>(local_slots_)));
  trans_a_.assign(local_slots_, CUBLAS_OP_T);
  trans_b_.assign(local_slots_, CUBLAS_OP_N);
  for (std::vector<int>* v : {&m_, &n_, &k_, &lda_, &ldb_, &ldc_}) v->assign(local_slots_, 0);
  group_size_.assign(local_slots_, 1);
  alpha_.assign(local_slots_, 1.0f);
  beta_.assign(local_slots_, 0.0f);
  return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize after init");
}

Status CudaGroupedFfn::LoadSlot(int layer_index, int local_slot, const float* w1, const float* w3,
                                const float* w2) {
  if (layer_index < 0 || layer_index >= num_layers_ || local_slot < 0 ||
      local_slot >= local_slots_) {
    return InvalidArgument("cuda expert backend: no slot " + std::to_string(local_slot) +
                           " in layer " + std::to_string(layer_index));
  }
  GRACE_RETURN_IF_ERROR(UseDevice());
  const size_t n = SlotElements(), at = n * (static_cast<size_t>(layer_index) * physical_slots_ +
                                             map_->physical(layer_index, local_slot));
  // The staging buffer is free: every LoadSlot ends by waiting for its copies. The copies are
  // queued behind any GEMMs still reading this slot, so those see the old weights.
  uint16_t* staging = weight_staging_.data();
  FloatsToBf16(w1, n, staging);
  FloatsToBf16(w3, n, staging + n);
  FloatsToBf16(w2, n, staging + 2 * n);
  int part = 0;
  for (DeviceArray<uint16_t>* w : {&w1_, &w3_, &w2_}) {
    GRACE_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpyAsync(w->data() + at, staging + part * n, n * sizeof(uint16_t),
                                   cudaMemcpyHostToDevice, stream_),
                   "cudaMemcpyAsync weights to device"));
    ++part;
  }
  return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize after weights");
}

Status CudaGroupedFfn::StageSlot(int layer_index, int physical_slot, const float* weights) {
  if (layer_index < 0 || layer_index >= num_layers_ || physical_slot < 0 ||
      physical_slot >= physical_slots_ || upload_staging_.capacity() == 0) {
    return InvalidArgument("cuda expert backend: no spare physical slot " +
                           std::to_string(physical_slot) + " in layer " +
                           std::to_string(layer_index));
  }
  GRACE_RETURN_IF_ERROR(UseDevice());
  const size_t n = SlotElements(),
               at = n * (static_cast<size_t>(layer_index) * physical_slots_ + physical_slot);
  // This half of the pinned buffer is free once its last upload has read it.
  const int half = next_half_;
  next_half_ = 1 - next_half_;
  GRACE_RETURN_IF_ERROR(
      CudaStatus(cudaEventSynchronize(upload_done_[half]), "cudaEventSynchronize upload"));
  uint16_t* staging = upload_staging_.data() + static_cast<size_t>(half) * 3 * n;
  FloatsToBf16(weights, 3 * n, staging);
  // GEMMs queued before the last map switch may still read a slot released since.
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaStreamWaitEvent(copy_stream_, map_switched_, 0),
                                   "cudaStreamWaitEvent map switch"));
  int part = 0;
  for (DeviceArray<uint16_t>* w : {&w1_, &w3_, &w2_}) {
    GRACE_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpyAsync(w->data() + at, staging + part * n, n * sizeof(uint16_t),
                                   cudaMemcpyHostToDevice, copy_stream_),
                   "cudaMemcpyAsync staged weights to device"));
    ++part;
  }
  return CudaStatus(cudaEventRecord(upload_done_[half], copy_stream_), "cudaEventRecord upload");
}

Status CudaGroupedFfn::FinishStaging() {
  GRACE_RETURN_IF_ERROR(UseDevice());
  GRACE_RETURN_IF_ERROR(
      CudaStatus(cudaEventRecord(staged_, copy_stream_), "cudaEventRecord staged"));
  return CudaStatus(cudaEventSynchronize(staged_), "cudaEventSynchronize staged");
}

StatusOr<DeviceSlotWeights> CudaGroupedFfn::SlotWeights(int layer_index, int physical_slot) {
  if (layer_index < 0 || layer_index >= num_layers_ || physical_slot < 0 ||
      physical_slot >= physical_slots_) {
    return InvalidArgument(
        "cuda expert backend: no physical slot " + std::to_string(physical_slot) + " in layer " +
        std::to_string(layer_index) + " (" + std::to_string(physical_slots_) + " per layer)");
  }
  const size_t n = SlotElements(),
               at = n * (static_cast<size_t>(layer_index) * physical_slots_ + physical_slot);
  DeviceSlotWeights out;
  out.elements = n;
  int part = 0;
  for (DeviceArray<uint16_t>* w : {&w1_, &w3_, &w2_}) out.part[part++] = w->data() + at;
  return out;
}

Status CudaGroupedFfn::OrderAfterMapSwitch(cudaStream_t stream) {
  GRACE_RETURN_IF_ERROR(UseDevice());
  return CudaStatus(cudaStreamWaitEvent(stream, map_switched_, 0),
                    "cudaStreamWaitEvent map switch");
}

Status CudaGroupedFfn::UseSlotMap(std::shared_ptr<const SlotMap> map) {
  map_ = std::move(map);
  // Marks the last work that may read the old map's slots (StageSlot waits for it).
  GRACE_RETURN_IF_ERROR(UseDevice());
  return CudaStatus(cudaEventRecord(map_switched_, stream_), "cudaEventRecord map switch");
}

Status CudaGroupedFfn::GroupedGemm(int m, int k, int groups, int table_a, int table_b, int table_c,
                                   const char* what) {
  for (int g = 0; g < groups; ++g) {
    m_[g] = m;
    k_[g] = k;
    lda_[g] = k;  // row-major W [m x k] is column-major [k x m]: op T
    ldb_[g] = k;  // row-major rows [n x k] are column-major [k x n]
    ldc_[g] = m;  // row-major output [n x m] is column-major [m x n]
  }
  void** table = table_device_.data();
  const size_t s = static_cast<size_t>(local_slots_);
  return CublasStatus(
      cublasGemmGroupedBatchedEx(handle_, trans_a_.data(), trans_b_.data(), m_.data(), n_.data(),
                                 k_.data(), alpha_.data(), table + table_a * s, CUDA_R_16BF,
                                 lda_.data(), table + table_b * s, CUDA_R_16BF, ldb_.data(),
                                 beta_.data(), table + table_c * s, CUDA_R_16BF, ldc_.data(),
                                 groups, group_size_.data(), CUBLAS_COMPUTE_32F),
      what);
}

Status CudaGroupedFfn::Enqueue(int layer_index, const int32_t* slot_row_offsets, const uint16_t* x,
                               uint16_t* y) {
  if (layer_index < 0 || layer_index >= num_layers_) {
    return InvalidArgument("cuda expert backend: no layer " + std::to_string(layer_index));
  }
  if (slot_row_offsets[0] != 0) {
    return InvalidArgument("cuda expert backend: slot row offsets must start at 0");
  }
  for (int s = 0; s < local_slots_; ++s) {
    if (slot_row_offsets[s + 1] < slot_row_offsets[s]) {
      return InvalidArgument("cuda expert backend: slot row offsets decrease at slot " +
                             std::to_string(s));
    }
  }
  const int64_t rows = slot_row_offsets[local_slots_];
  if (rows == 0) return Status::Ok();
  GRACE_RETURN_IF_ERROR(UseDevice());
  const int h = shape_.hidden, f = shape_.ffn;
  const size_t scratch = static_cast<size_t>(rows) * f;
  if (scratch > gate_.capacity()) {
    // Growing frees the old scratch, which queued GEMMs may still use.
    GRACE_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"));
    GRACE_RETURN_IF_ERROR(gate_.Resize(scratch));
    GRACE_RETURN_IF_ERROR(up_.Resize(scratch));
  }
  // The previous Enqueue's table upload must have read the pinned table before it is rewritten;
  // in steady state that finished long ago, so this does not wait.
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventSynchronize(table_copied_), "cudaEventSynchronize"));
  void** table = table_host_.data();
  const size_t s_count = static_cast<size_t>(local_slots_);
  const size_t slot_elements = SlotElements();
  int groups = 0;
  for (int s = 0; s < local_slots_; ++s) {
    const int64_t begin = slot_row_offsets[s];
    const int n = slot_row_offsets[s + 1] - slot_row_offsets[s];
    if (n == 0) continue;
    const size_t at = slot_elements * (static_cast<size_t>(layer_index) * physical_slots_ +
                                       map_->physical(layer_index, s));
    // cuBLAS reads B and C through non-const pointers in one table; x and the weights are only
    // read (they are B or A operands), so casting their const away is sound.
    void* xs = const_cast<uint16_t*>(x) + begin * h;
    void* gs = gate_.data() + begin * f;
    void* us = up_.data() + begin * f;
    table[kGateA * s_count + groups] = w1_.data() + at;
    table[kGateB * s_count + groups] = xs;
    table[kGateC * s_count + groups] = gs;
    table[kUpA * s_count + groups] = w3_.data() + at;
    table[kUpB * s_count + groups] = xs;
    table[kUpC * s_count + groups] = us;
    table[kDownA * s_count + groups] = w2_.data() + at;
    table[kDownB * s_count + groups] = gs;
    table[kDownC * s_count + groups] = y + begin * h;
    n_[groups] = n;
    ++groups;
  }
  GRACE_RETURN_IF_ERROR(CudaStatus(
      cudaMemcpyAsync(table_device_.data(), table, kTableArrays * s_count * sizeof(void*),
                      cudaMemcpyHostToDevice, stream_),
      "cudaMemcpyAsync pointer table"));
  GRACE_RETURN_IF_ERROR(
      CudaStatus(cudaEventRecord(table_copied_, stream_), "cudaEventRecord pointer table"));
  GRACE_RETURN_IF_ERROR(
      GroupedGemm(f, h, groups, kGateA, kGateB, kGateC, "cublasGemmGroupedBatchedEx gate (W1)"));
  GRACE_RETURN_IF_ERROR(
      GroupedGemm(f, h, groups, kUpA, kUpB, kUpC, "cublasGemmGroupedBatchedEx up (W3)"));
  GRACE_RETURN_IF_ERROR(
      CudaStatus(cuda::SwigluBf16(gate_.data(), up_.data(), static_cast<int64_t>(scratch), stream_),
                 "SwigluBf16 launch"));
  return GroupedGemm(h, f, groups, kDownA, kDownB, kDownC, "cublasGemmGroupedBatchedEx down (W2)");
}

double CudaGroupedFfn::Flops(int64_t rows) const {
  return 6.0 * static_cast<double>(rows) * shape_.hidden * shape_.ffn;
}

}  // namespace grace
