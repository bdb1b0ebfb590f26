// Transport: how ranks move bytes to each other, for the data path's dispatch and combine
// (all-to-all-v) and for expert weight transfers (point-to-point).
//
// One primitive, Group(): a set of sends and receives that complete together, like
// ncclGroupStart/ncclSend/ncclRecv/ncclGroupEnd. Several operations with the same peer are
// matched in order. A peer may be the rank itself (a local copy). Implementations:
//   TcpTransport  (migrate/tcp_transport.h): Boost.Asio over TCP, host memory; CPU machines, CI.
//   NcclTransport (migrate/nccl_transport.h): ncclSend/ncclRecv, device memory, own stream.
//
//   std::vector<size_t> send_bytes(size), recv_bytes(size);
//   GRACE_RETURN_IF_ERROR(transport.AllToAll(send_bytes.data(), recv_bytes.data(),
//   sizeof(size_t))); GRACE_RETURN_IF_ERROR(transport.AllToAllV(send, send_bytes, recv,
//   recv_bytes));
//
// Thread contract: one thread at a time per Transport object; every rank must issue the same
// sequence of collective calls.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "core/ids.h"
#include "core/status.h"

namespace grace {

struct SendOp {
  RankId peer = 0;
  const void* data = nullptr;
  size_t bytes = 0;
};

struct RecvOp {
  RankId peer = 0;
  void* data = nullptr;
  size_t bytes = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual RankId rank() const = 0;
  virtual int size() const = 0;
  virtual const char* name() const = 0;

  // Runs all the sends and receives and returns when every one has completed (or the first
  // error). The receiver must know the sizes (exchange them first with AllToAll).
  virtual Status Group(std::span<const SendOp> sends, std::span<const RecvOp> recvs) = 0;

  // Rank r's block p of `send` (bytes_each bytes) lands in block r of rank p's `recv`.
  Status AllToAll(const void* send, void* recv, size_t bytes_each);

  // Variable sizes: send_bytes[p] bytes to rank p, packed back to back in `send` in rank order;
  // recv_bytes[p] bytes from rank p, packed likewise in `recv`.
  Status AllToAllV(const void* send, std::span<const size_t> send_bytes, void* recv,
                   std::span<const size_t> recv_bytes);

  Status Send(RankId peer, const void* data, size_t bytes) {
    SendOp op{peer, data, bytes};
    return Group({&op, 1}, {});
  }
  Status Recv(RankId peer, void* data, size_t bytes) {
    RecvOp op{peer, data, bytes};
    return Group({}, {&op, 1});
  }

  // Returns once every rank has reached the barrier.
  virtual Status Barrier();

 protected:
  // Scratch op lists reused by the collectives (no allocation in steady state).
  std::vector<SendOp> send_ops_;
  std::vector<RecvOp> recv_ops_;
};

}  // namespace grace
