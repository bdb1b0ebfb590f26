#include "kernels/cuda_device.h"

namespace grace {

Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return Status::Ok();
  // Out of device memory is no transport failure to retry (the agent re-forms its meshes on
  // kUnavailable): it fails the step at once.
  const StatusCode code = error == cudaErrorMemoryAllocation ? StatusCode::kFailedPrecondition
                          : error == cudaErrorInvalidValue   ? StatusCode::kInvalidArgument
                                                             : StatusCode::kInternal;
  return Status(code, std::string(what) + ": CUDA error " + cudaGetErrorName(error) + ": " +
                          cudaGetErrorString(error));
}

Status CublasStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Internal(std::string(what) + ": cuBLAS error " + cublasGetStatusName(status) + ": " +
                  cublasGetStatusString(status));
}

bool CudaDeviceAvailable(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (reason != nullptr) {
      *reason = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    }
    cudaGetLastError();  // clear the sticky error for later callers
    return false;
  }
  if (count == 0) {
    if (reason != nullptr) *reason = "no CUDA device present";
    return false;
  }
  return true;
}

Status CreateStream(StreamPriority priority, cudaStream_t* stream) {
  int least = 0, greatest = 0;
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaDeviceGetStreamPriorityRange(&least, &greatest),
                                   "cudaDeviceGetStreamPriorityRange"));
  const int value = priority == StreamPriority::kDataPath ? greatest : least;
  return CudaStatus(cudaStreamCreateWithPriority(stream, cudaStreamNonBlocking, value),
                    "cudaStreamCreateWithPriority");
}

}  // namespace grace
