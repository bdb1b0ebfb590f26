// CUDA plumbing for the host side of grace's GPU path: the one place CUDA runtime and cuBLAS
// errors become Status values, device detection, a growable device array and a growable pinned
// (page-locked) host array for staging copies.
//
//   std::string why;
//   if (!CudaDeviceAvailable(&why)) GTEST_SKIP() << why;
//   DeviceArray<float> x;  GRACE_RETURN_IF_ERROR(x.Upload(host.data(), host.size(), stream));
//   PinnedArray<uint16_t> staging;  GRACE_RETURN_IF_ERROR(staging.Resize(n));
//
// Built only with CUDA (grace_kernels_cuda). DeviceArray and PinnedArray are owned by one thread;
// growing either frees the old memory, so the owner grows them only when no copy or kernel still
// uses it.
#pragma once

#include <cstddef>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "core/status.h"

namespace grace {

// cudaSuccess -> Ok; else an error naming `what` and CUDA's own message.
Status CudaStatus(cudaError_t error, const char* what);
Status CublasStatus(cublasStatus_t status, const char* what);

// True when at least one device can be used. Any CUDA error (no driver, "CUDA driver version is
// insufficient", no device) counts as none; *reason then says which.
bool CudaDeviceAvailable(std::string* reason);

// Streams of the current device, non-blocking (no implicit sync with the legacy default stream).
// In CUDA a lower number is a higher priority and 0, the default, is already the lowest, so the
// data path must ask for the greatest priority for a background copy to yield to it.
enum class StreamPriority {
  kDataPath,    // the layer's kernels, its GEMMs and its dispatch: the greatest priority
  kBackground,  // migration and staging copies: the least
};
Status CreateStream(StreamPriority priority, cudaStream_t* stream);

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (data_ != nullptr) cudaFree(data_);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

  // Makes room for n elements; reallocates only when the capacity grows.
  Status Resize(size_t n) {
    if (n > capacity_) {
      if (data_ != nullptr) cudaFree(data_);
      data_ = nullptr;
      capacity_ = 0;
      GRACE_RETURN_IF_ERROR(
          CudaStatus(cudaMalloc(reinterpret_cast<void**>(&data_), n * sizeof(T)), "cudaMalloc"));
      capacity_ = n;
    }
    size_ = n;
    return Status::Ok();
  }
  Status Upload(const T* host, size_t n, cudaStream_t stream) {
    GRACE_RETURN_IF_ERROR(Resize(n));
    if (n == 0) return Status::Ok();
    return CudaStatus(cudaMemcpyAsync(data_, host, n * sizeof(T), cudaMemcpyHostToDevice, stream),
                      "cudaMemcpyAsync to device");
  }
  Status Download(T* host, size_t n, cudaStream_t stream) const {
    if (n == 0) return Status::Ok();
    return CudaStatus(cudaMemcpyAsync(host, data_, n * sizeof(T), cudaMemcpyDeviceToHost, stream),
                      "cudaMemcpyAsync to host");
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// Page-locked host memory: copies from and to it run asynchronously at full bus speed.
template <typename T>
class PinnedArray {
 public:
  PinnedArray() = default;
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  ~PinnedArray() {
    if (data_ != nullptr) cudaFreeHost(data_);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t capacity() const { return capacity_; }

  // Makes room for n elements; reallocates (contents lost) only when the capacity grows.
  Status Resize(size_t n) {
    if (n <= capacity_) return Status::Ok();
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = nullptr;
    capacity_ = 0;
    GRACE_RETURN_IF_ERROR(CudaStatus(
        cudaMallocHost(reinterpret_cast<void**>(&data_), n * sizeof(T)), "cudaMallocHost"));
    capacity_ = n;
    return Status::Ok();
  }

 private:
  T* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace grace
