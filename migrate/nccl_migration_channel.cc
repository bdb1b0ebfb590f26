#include "migrate/nccl_migration_channel.h"

#include <string>

namespace grace {
namespace {

// Sleeps this long between polls of a chunk: a chunk takes tens of microseconds at least, and
// the migration thread should not keep a core spinning for the whole copy.
constexpr std::chrono::microseconds kPollSleep{20};

}  // namespace

StatusOr<std::unique_ptr<NcclMigrationChannel>> NcclMigrationChannel::Create(
    Transport& mesh, const NcclMigrationChannelOptions& options) {
  StatusOr<std::unique_ptr<NcclTransport>> nccl =
      NcclTransport::Create(mesh, {.device = options.device,
                                   .timeout = options.timeout,
                                   .low_priority = true,
                                   .poll_sleep = kPollSleep});
  if (!nccl.ok()) {
    return nccl.status().WithContext("nccl migration channel: rank " + std::to_string(mesh.rank()) +
                                     " forming the migration communicator of ranks 0.." +
                                     std::to_string(mesh.size() - 1) + " on device " +
                                     std::to_string(options.device));
  }
  return std::unique_ptr<NcclMigrationChannel>(new NcclMigrationChannel(std::move(*nccl)));
}

Status NcclMigrationChannel::Named(const Status& s, const std::string& doing,
                                   std::string_view phase, size_t bytes) const {
  if (s.ok()) return s;
  return s.WithContext("nccl migration channel: rank " + std::to_string(rank()) + " " + doing +
                       " (" + std::string(phase) + ", " + std::to_string(bytes) + " bytes)");
}

Status NcclMigrationChannel::SendChunk(RankId peer, const void* data, size_t bytes,
                                       std::string_view phase) {
  if (peer == rank() || peer < 0 || peer >= size()) {
    return InvalidArgument("nccl migration channel: rank " + std::to_string(rank()) +
                           " cannot send to rank " + std::to_string(peer) + " (" +
                           std::string(phase) + "); CopyChunk copies within a rank");
  }
  return Named(nccl_->Send(peer, data, bytes), "sending to rank " + std::to_string(peer), phase,
               bytes);
}

Status NcclMigrationChannel::RecvChunk(RankId peer, void* data, size_t bytes,
                                       std::string_view phase) {
  if (peer == rank() || peer < 0 || peer >= size()) {
    return InvalidArgument("nccl migration channel: rank " + std::to_string(rank()) +
                           " cannot receive from rank " + std::to_string(peer) + " (" +
                           std::string(phase) + "); CopyChunk copies within a rank");
  }
  return Named(nccl_->Recv(peer, data, bytes), "receiving from rank " + std::to_string(peer), phase,
               bytes);
}

Status NcclMigrationChannel::CopyChunk(const void* from, void* to, size_t bytes,
                                       std::string_view phase) {
  const SendOp send{rank(), from, bytes};
  const RecvOp recv{rank(), to, bytes};
  return Named(nccl_->Group({&send, 1}, {&recv, 1}), "copying within the rank", phase, bytes);
}

}  // namespace grace
