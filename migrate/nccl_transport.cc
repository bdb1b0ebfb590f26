#include "migrate/nccl_transport.h"

#include <nccl.h>

#include "kernels/cuda_device.h"

namespace grace {
namespace {

// The one place NCCL errors become Status values.
Status NcclStatus(ncclResult_t result, const char* what) {
  if (result == ncclSuccess) return Status::Ok();
  const StatusCode code =
      result == ncclInvalidArgument || result == ncclInvalidUsage ? StatusCode::kInvalidArgument
      : result == ncclRemoteError || result == ncclSystemError    ? StatusCode::kUnavailable
                                                                  : StatusCode::kInternal;
  return Status(code, std::string("nccl transport: ") + what + ": " + ncclGetErrorString(result));
}

ncclComm_t Comm(void* p) {
  return static_cast<ncclComm_t>(p);
}
cudaStream_t Stream(void* p) {
  return static_cast<cudaStream_t>(p);
}

}  // namespace

StatusOr<std::unique_ptr<NcclTransport>> NcclTransport::Create(Transport& bootstrap, int device) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) return Unavailable("nccl transport: " + why);
  std::unique_ptr<NcclTransport> t(new NcclTransport());
  t->rank_ = bootstrap.rank();
  t->size_ = bootstrap.size();
  t->device_ = device;
  ncclUniqueId id{};
  if (t->rank_ == 0) GRACE_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  // Rank 0's id to everyone: an all-to-all where only rank 0's blocks matter.
  std::vector<ncclUniqueId> send(t->size_, id), recv(t->size_);
  GRACE_RETURN_IF_ERROR(bootstrap.AllToAll(send.data(), recv.data(), sizeof(ncclUniqueId)));
  id = recv[0];
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));
  cudaStream_t stream = nullptr;
  GRACE_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  t->stream_ = stream;
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&t->barrier_buffer_, 2 * t->size_), "cudaMalloc"));
  ncclComm_t comm = nullptr;
  GRACE_RETURN_IF_ERROR(
      NcclStatus(ncclCommInitRank(&comm, t->size_, id, t->rank_), "ncclCommInitRank"));
  t->comm_ = comm;
  return t;
}

NcclTransport::~NcclTransport() {
  if (comm_ != nullptr) ncclCommDestroy(Comm(comm_));
  if (barrier_buffer_ != nullptr) cudaFree(barrier_buffer_);
  if (stream_ != nullptr) cudaStreamDestroy(Stream(stream_));
}

Status NcclTransport::Group(std::span<const SendOp> sends, std::span<const RecvOp> recvs) {
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
  GRACE_RETURN_IF_ERROR(NcclStatus(ncclGroupStart(), "ncclGroupStart"));
  Status enqueue;
  for (const SendOp& op : sends) {
    if (op.bytes == 0 || !enqueue.ok()) continue;
    enqueue = NcclStatus(
        ncclSend(op.data, op.bytes, ncclInt8, op.peer, Comm(comm_), Stream(stream_)), "ncclSend");
  }
  for (const RecvOp& op : recvs) {
    if (op.bytes == 0 || !enqueue.ok()) continue;
    enqueue = NcclStatus(
        ncclRecv(op.data, op.bytes, ncclInt8, op.peer, Comm(comm_), Stream(stream_)), "ncclRecv");
  }
  GRACE_RETURN_IF_ERROR(NcclStatus(ncclGroupEnd(), "ncclGroupEnd"));
  GRACE_RETURN_IF_ERROR(enqueue);
  return CudaStatus(cudaStreamSynchronize(Stream(stream_)), "cudaStreamSynchronize");
}

Status NcclTransport::Barrier() {
  std::byte* buf = static_cast<std::byte*>(barrier_buffer_);
  return AllToAll(buf, buf + size_, 1);
}

}  // namespace grace
