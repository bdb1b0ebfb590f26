// NcclMigrationChannel: the device-to-device path of one migration's expert-weight copies
// ([migration].transport = "nccl"), separate from the data path's transport.
//
// It owns its own NCCL communicator, formed over the migration's TCP mesh (rank 0's
// ncclUniqueId goes to every rank in one all-to-all over it, as NcclTransport does), and a CUDA
// stream created at the lowest priority the device offers (cudaDeviceGetStreamPriorityRange), so
// the data path's kernels go first. Each call moves one chunk between device buffers and returns
// once it has landed; the caller chunks and paces (agent/device_migration_executor.h). A chunk
// whose two ends are this rank is a send to self and a receive from self in one NCCL group.
//
//   GRACE_ASSIGN_OR_RETURN(auto mesh, TcpTransport::Connect(mesh_options));
//   GRACE_ASSIGN_OR_RETURN(auto channel, NcclMigrationChannel::Create(*mesh, {.device = 0}));
//   GRACE_RETURN_IF_ERROR(channel->RecvChunk(/*peer=*/1, slot_bytes + off, n, "layer 3 slot 9"));
//
// Every wait is bounded by options.timeout (set-up, and each chunk): a dead or stuck peer, or a
// communicator error, ends in ncclCommAbort and an error naming this rank, the peer and the
// phase (the caller's words: which expert, which bytes) (DeadlineExceeded for the deadline,
// Unavailable for a failure); the channel then refuses every further call, and the migration is
// dropped. NCCL's errors are converted in NcclTransport, the one place.
//
// Thread contract: one thread (the rank's migration thread). Built only with CUDA.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "migrate/nccl_transport.h"

namespace grace {

struct NcclMigrationChannelOptions {
  int device = 0;
  std::chrono::milliseconds timeout{60000};  // set-up, and each chunk
};

class NcclMigrationChannel {
 public:
  // Collective over `mesh`'s ranks (every rank must call it); fails, naming the cause, without a
  // usable device or when a rank does not join in time.
  static StatusOr<std::unique_ptr<NcclMigrationChannel>> Create(
      Transport& mesh, const NcclMigrationChannelOptions& options);

  RankId rank() const { return nccl_->rank(); }
  int size() const { return nccl_->size(); }
  // The lowest-priority stream the chunks run on (a cudaStream_t). Work queued on it before a
  // chunk (a wait for another stream's event) runs before the chunk.
  void* stream() const { return nccl_->stream(); }

  // `bytes` of device memory at `data` to rank `peer` (not this rank).
  Status SendChunk(RankId peer, const void* data, size_t bytes, std::string_view phase);
  // `bytes` from rank `peer` (not this rank) into device memory at `data`.
  Status RecvChunk(RankId peer, void* data, size_t bytes, std::string_view phase);
  // Both ends here: `bytes` from `from` to `to`, through NCCL's send to self.
  Status CopyChunk(const void* from, void* to, size_t bytes, std::string_view phase);

 private:
  explicit NcclMigrationChannel(std::unique_ptr<NcclTransport> nccl) : nccl_(std::move(nccl)) {}
  // The error of a failed chunk, naming where it stood.
  Status Named(const Status& s, const std::string& doing, std::string_view phase,
               size_t bytes) const;

  std::unique_ptr<NcclTransport> nccl_;
};

}  // namespace grace
