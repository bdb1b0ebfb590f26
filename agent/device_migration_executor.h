// RunRankDeviceTransfers: one rank's share of a migration's weight copies device to device, the
// [migration].transport = "nccl" twin of RunRankTransfers (agent/migration_executor.h) for the
// CUDA backend ([agent].backend = "cuda").
//
// Every rank of the job forms the migration's TCP mesh as on the TCP path, and over it its own
// NCCL communicator (migrate/nccl_migration_channel.h, on a lowest-priority stream). It walks the
// transfer list in the same global order: a transfer whose destination is on this rank takes a
// free spare physical slot of the backend and receives the expert's bf16 weights (w1, w3, w2)
// straight into its device memory; one whose source is on this rank sends the physical slot the
// serving map names. Chunks of chunk_bytes are paced as on the TCP path (agent/copy_pacer.h), and
// each chunk has landed when its call returns, so when this returns the staged slots are ready
// for READY and the switch step only publishes the slot map (ExpertBackend::UseSlotMap). The
// weights never go through host memory; their digest does (migrate/weight_digest.h, as on the TCP
// path): between ranks the source reads its slot back through a pinned buffer and digests it
// before the first chunk, sends the digest over the TCP mesh after the last, and the destination
// digests what landed the same way and stages nothing that differs (a WeightIntegrityError, so
// the rank never reports READY on corrupted weights). That read-back costs one device-to-host
// pass over each moved expert at each end. It returns once every rank has finished its walk (a
// barrier over the mesh), so no rank tears its communicator down while a peer still copies.
//
//   GRACE_ASSIGN_OR_RETURN(DeviceStagedCopies copies,
//                          RunRankDeviceTransfers(options, transfers, backend, *serving_map));
//
// Every wait is bounded (options.timeout for the communicator and each chunk): a dead peer or a
// timeout aborts the communicator and fails with an error naming the peer rank and the phase; the
// slots this call took go back to the pool, and the migration is dropped (ABORT to the daemon).
//
// Thread contract: the rank's migration thread, the backend's one staging thread; reads
// `progress` (atomics) and `cancel`, which stops it between chunks. Built only with CUDA.
#pragma once

#include <chrono>
#include <span>

#include "agent/migration_executor.h"
#include "agent/slot_staging.h"
#include "core/wire_protocol.h"
#include "kernels/expert_backend.h"

namespace grace {

struct DeviceTransferOptions {
  // Mesh, slots per rank, chunk_bytes and pacing as on the TCP path; expert_floats is unused
  // (the device slots' bf16 size is the backend's).
  TransferOptions transfer;
  std::chrono::milliseconds timeout{60000};  // the communicator's set-up, and each chunk
};

struct DeviceStagedCopies {
  StagedCopies copies;     // the byte counts; its staged slots carry no host weights
  BackendStaging staging;  // the map the switch publishes, the slots taken and replaced
};

// `current`: the slot map of the epoch this rank serves (the sources' physical slots).
StatusOr<DeviceStagedCopies> RunRankDeviceTransfers(const DeviceTransferOptions& options,
                                                    std::span<const WireTransfer> transfers,
                                                    ExpertBackend& backend, const SlotMap& current);

}  // namespace grace
