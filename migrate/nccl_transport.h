// NcclTransport: the Transport over NCCL for GPU ranks. Group() is one ncclGroupStart/End
// around ncclSend/ncclRecv (bytes as ncclInt8) on the transport's own communicator and stream,
// then waits for the stream; buffers are device memory of the transport's device.
//
// The ncclUniqueId travels over a bootstrap Transport (the TCP one): rank 0 creates it and
// sends it to every rank.
//
//   GRACE_ASSIGN_OR_RETURN(auto tcp, TcpTransport::Connect(options));
//   GRACE_ASSIGN_OR_RETURN(auto nccl, NcclTransport::Create(*tcp, {.device = 0}));
//
// Never blocks for ever: the communicator is non-blocking, and its initialisation and every
// Group() poll ncclCommGetAsyncError and the stream against a deadline (options.timeout). A
// failure (a dead peer, a network error) or the deadline ends in ncclCommAbort and a clear
// error (Unavailable, or DeadlineExceeded for the deadline); the transport then refuses further
// calls, and the owner forms a new one.
//
// Thread contract: one thread at a time (Transport's). Built only with CUDA.
#pragma once

#include <chrono>
#include <memory>

#include "migrate/transport.h"

namespace grace {

struct NcclTransportOptions {
  int device = 0;
  // Communicator set-up, and each Group() from its call to its completion.
  std::chrono::milliseconds timeout{60000};
  // true: the stream is created at the device's least priority, so the data path's kernels and
  // dispatch (on streams of the greatest priority) go first (the migration's weight copies).
  // false: the greatest (the data path's dispatch and combine).
  bool low_priority = false;
  // Between two polls of a wait: 0 yields (the data path, latency first); the migration channel
  // sleeps, so a long copy does not keep a core spinning.
  std::chrono::microseconds poll_sleep{0};
};

class NcclTransport final : public Transport {
 public:
  // Collective over `bootstrap`'s ranks; fails (naming the cause) without a usable device.
  static StatusOr<std::unique_ptr<NcclTransport>> Create(Transport& bootstrap,
                                                         const NcclTransportOptions& options);
  static StatusOr<std::unique_ptr<NcclTransport>> Create(Transport& bootstrap, int device) {
    return Create(bootstrap, NcclTransportOptions{.device = device});
  }
  ~NcclTransport() override;

  RankId rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "nccl"; }
  Status Group(std::span<const SendOp> sends, std::span<const RecvOp> recvs) override;
  Status Barrier() override;

  // The stream NCCL work is enqueued on (a cudaStream_t).
  void* stream() const { return stream_; }

 private:
  NcclTransport() = default;
  // Polls until the communicator has no operation in progress and, when `done` (a cudaEvent_t)
  // is set, that event has completed; aborts the communicator on an error or at the deadline.
  Status WaitUntilDone(void* done, std::chrono::steady_clock::time_point deadline,
                       const char* what);
  // ncclCommAbort, once; later calls are refused with `why`.
  Status Abort(Status why);

  RankId rank_ = 0;
  int size_ = 1;
  int device_ = 0;
  std::chrono::milliseconds timeout_{60000};
  std::chrono::microseconds poll_sleep_{0};
  void* comm_ = nullptr;    // ncclComm_t
  void* stream_ = nullptr;  // cudaStream_t
  void* done_ = nullptr;    // cudaEvent_t recorded after each Group's work
  void* barrier_buffer_ = nullptr;
  Status aborted_;  // non-Ok once the communicator was aborted
};

}  // namespace grace
