// NcclTransport: the Transport over NCCL for GPU ranks. Group() is one ncclGroupStart/End
// around ncclSend/ncclRecv (bytes as ncclInt8) on the transport's own communicator and stream,
// then waits for the stream; buffers are device memory of the transport's device.
//
// The ncclUniqueId travels over a bootstrap Transport (the TCP one): rank 0 creates it and
// sends it to every rank.
//
//   GRACE_ASSIGN_OR_RETURN(auto tcp, TcpTransport::Connect(options));
//   GRACE_ASSIGN_OR_RETURN(auto nccl, NcclTransport::Create(*tcp, /*device=*/0));
//
// Thread contract: one thread at a time (Transport's). Built only with CUDA.
#pragma once

#include <memory>

#include "migrate/transport.h"

namespace grace {

class NcclTransport final : public Transport {
 public:
  // Collective over `bootstrap`'s ranks; fails (naming the cause) without a usable device.
  static StatusOr<std::unique_ptr<NcclTransport>> Create(Transport& bootstrap, int device);
  ~NcclTransport() override;

  RankId rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "nccl"; }
  Status Group(std::span<const SendOp> sends, std::span<const RecvOp> recvs) override;
  Status Barrier() override;

  // The stream NCCL work is enqueued on.
  void* stream() const { return stream_; }

 private:
  NcclTransport() = default;
  RankId rank_ = 0;
  int size_ = 1;
  int device_ = 0;
  void* comm_ = nullptr;    // ncclComm_t
  void* stream_ = nullptr;  // cudaStream_t
  void* barrier_buffer_ = nullptr;
};

}  // namespace grace
