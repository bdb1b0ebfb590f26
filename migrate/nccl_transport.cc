#include "migrate/nccl_transport.h"

#include <thread>

#include <nccl.h>

#include "kernels/cuda_device.h"

namespace grace {
namespace {

// The one place NCCL errors become Status values. ncclInProgress is not an error: a
// non-blocking communicator's operation has been queued.
Status NcclStatus(ncclResult_t result, const char* what) {
  if (result == ncclSuccess || result == ncclInProgress) return Status::Ok();
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
cudaEvent_t Event(void* p) {
  return static_cast<cudaEvent_t>(p);
}

}  // namespace

StatusOr<std::unique_ptr<NcclTransport>> NcclTransport::Create(
    Transport& bootstrap, const NcclTransportOptions& options) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) return Unavailable("nccl transport: " + why);
  std::unique_ptr<NcclTransport> t(new NcclTransport());
  t->rank_ = bootstrap.rank();
  t->size_ = bootstrap.size();
  t->device_ = options.device;
  t->timeout_ = options.timeout;
  t->poll_sleep_ = options.poll_sleep;
  ncclUniqueId id{};
  if (t->rank_ == 0) GRACE_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  // Rank 0's id to everyone: an all-to-all where only rank 0's blocks matter.
  std::vector<ncclUniqueId> send(t->size_, id), recv(t->size_);
  GRACE_RETURN_IF_ERROR(bootstrap.AllToAll(send.data(), recv.data(), sizeof(ncclUniqueId)));
  id = recv[0];
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options.device), "cudaSetDevice"));
  cudaStream_t stream = nullptr;
  GRACE_RETURN_IF_ERROR(CreateStream(
      options.low_priority ? StreamPriority::kBackground : StreamPriority::kDataPath, &stream));
  t->stream_ = stream;
  cudaEvent_t done = nullptr;
  GRACE_RETURN_IF_ERROR(
      CudaStatus(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate"));
  t->done_ = done;
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&t->barrier_buffer_, 2 * t->size_), "cudaMalloc"));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every wait is ours, with a deadline
  ncclComm_t comm = nullptr;
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  const ncclResult_t init = ncclCommInitRankConfig(&comm, t->size_, id, t->rank_, &config);
  t->comm_ = comm;
  if (init != ncclSuccess && init != ncclInProgress) {
    return t->Abort(NcclStatus(init, "ncclCommInitRankConfig"));
  }
  GRACE_RETURN_IF_ERROR(t->WaitUntilDone(nullptr, deadline, "ncclCommInitRankConfig"));
  return t;
}

NcclTransport::~NcclTransport() {
  cudaSetDevice(device_);  // the stream and event are this device's
  if (comm_ != nullptr) {
    // A healthy communicator whose peers are gone may not finalise; aborting never waits.
    ncclCommAbort(Comm(comm_));
  }
  if (stream_ != nullptr) cudaStreamSynchronize(Stream(stream_));
  if (barrier_buffer_ != nullptr) cudaFree(barrier_buffer_);
  if (done_ != nullptr) cudaEventDestroy(Event(done_));
  if (stream_ != nullptr) cudaStreamDestroy(Stream(stream_));
}

Status NcclTransport::Abort(Status why) {
  if (comm_ != nullptr) {
    ncclCommAbort(Comm(comm_));
    comm_ = nullptr;
  }
  aborted_ = Status(why.code(), why.message() + " (communicator aborted)");
  return aborted_;
}

Status NcclTransport::WaitUntilDone(void* done, std::chrono::steady_clock::time_point deadline,
                                    const char* what) {
  while (true) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t query = ncclCommGetAsyncError(Comm(comm_), &state);
    if (query != ncclSuccess) return Abort(NcclStatus(query, "ncclCommGetAsyncError"));
    if (state != ncclSuccess && state != ncclInProgress) {
      return Abort(NcclStatus(state, what)
                       .WithContext("rank " + std::to_string(rank_) + " (a peer failed or left?)"));
    }
    if (state == ncclSuccess) {
      if (done == nullptr) return Status::Ok();
      const cudaError_t e = cudaEventQuery(Event(done));
      if (e == cudaSuccess) return Status::Ok();
      if (e != cudaErrorNotReady) return Abort(CudaStatus(e, what));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Abort(DeadlineExceeded(std::string("nccl transport: rank ") + std::to_string(rank_) +
                                    ": " + what + " did not complete within " +
                                    std::to_string(timeout_.count()) +
                                    " ms (a peer dead or stuck?)"));
    }
    if (poll_sleep_.count() > 0) {
      std::this_thread::sleep_for(poll_sleep_);
    } else {
      std::this_thread::yield();
    }
  }
}

Status NcclTransport::Group(std::span<const SendOp> sends, std::span<const RecvOp> recvs) {
  if (!aborted_.ok()) return aborted_;
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
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
  const Status ended = NcclStatus(ncclGroupEnd(), "ncclGroupEnd");
  if (!ended.ok()) return Abort(ended);
  if (!enqueue.ok()) return Abort(enqueue);
  // A non-blocking group may still be issuing its operations: wait for that, then record the
  // event behind them and wait for the stream to pass it.
  GRACE_RETURN_IF_ERROR(WaitUntilDone(nullptr, deadline, "ncclGroupEnd"));
  const Status recorded =
      CudaStatus(cudaEventRecord(Event(done_), Stream(stream_)), "cudaEventRecord");
  if (!recorded.ok()) return Abort(recorded);
  return WaitUntilDone(done_, deadline, "send/receive group");
}

Status NcclTransport::Barrier() {
  std::byte* buf = static_cast<std::byte*>(barrier_buffer_);
  return AllToAll(buf, buf + size_, 1);
}

}  // namespace grace
