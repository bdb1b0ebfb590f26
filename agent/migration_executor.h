// MigrationExecutor: one rank's share of a migration's weight copies (PREPARE's transfers),
// run in the background while the data path keeps serving the old epoch.
//
// Every rank of the job walks the same transfer list in the same order over its own TCP mesh
// (a TcpTransport separate from the data path's, formed per migration): a transfer whose source
// slot is on this rank sends that slot's weights in chunks, one whose destination is on this rank
// receives them into a new staging buffer (a copy inside one rank is a memcpy). Since both ends
// of every transfer take the list in one global order, the earliest unfinished transfer always
// has both ends ready: no deadlock. Between chunks the copy yields to the data path: it holds
// max_bytes_per_s, and pauses while the last step took longer than step_budget x the step
// baseline (agent/copy_pacer.h). The staged buffers switch in at COMMIT (agent/serving_state.h).
// With [migration].transport = "nccl" the CUDA backend's twin, agent/device_migration_executor.h,
// copies device to device instead.
//
// Integrity: after an expert's last chunk its source sends the expert's digest (HMAC-SHA256 keyed
// from mesh.cluster_secret, binding layer, expert and target_epoch: migrate/weight_digest.h); the
// destination digests what it received and, on a mismatch, fails with WeightIntegrityError, so
// its rank never reports READY and the migration aborts.
//
//   GRACE_ASSIGN_OR_RETURN(StagedCopies copies, RunRankTransfers(options, transfers, slots));
//
// Thread contract: runs on one migration thread per local rank; reads `progress` (atomics) and
// the immutable source weights; `cancel` stops it between chunks.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <vector>

#include "agent/serving_state.h"
#include "core/wire_protocol.h"
#include "migrate/tcp_transport.h"

namespace grace {

// The weights one rank's slots hold: [layer][local slot], null for an empty slot; each entry
// w1 | w3 | w2 (StagedSlot's layout). Immutable entries, shared with the staging of the next
// epoch.
using RankSlotWeights = std::vector<std::vector<std::shared_ptr<const std::vector<float>>>>;

struct TransferOptions {
  TcpTransportOptions mesh;  // rank, size, rendezvous and cluster secret of the migration mesh
  Epoch target_epoch = 0;    // the epoch being prepared, bound into every expert's digest
  int slots_per_rank = 0;
  size_t expert_floats = 0;  // 3 x ffn x hidden
  size_t chunk_bytes = 256 << 10;
  double max_bytes_per_s = 0;  // 0: no cap
  double step_budget = 1.25;
  const RankProgress* progress = nullptr;  // this rank's data path, for flow control
  const std::atomic<bool>* cancel = nullptr;
};

struct StagedCopies {
  std::vector<StagedSlot> staged;  // every destination slot on this rank
  uint64_t bytes_in = 0;           // bytes staged here (received plus local copies)
  uint64_t bytes_sent = 0;         // bytes sent to other ranks
  double paused_s = 0;             // time spent yielding to the data path
};

// Says once per process, on stderr, when the daemon's modeled bytes per expert differ from what
// this agent copies (`expert_bytes`); the copy goes on with its own size.
void WarnIfModeledBytesDiffer(std::span<const WireTransfer> transfers, size_t expert_bytes);

StatusOr<StagedCopies> RunRankTransfers(const TransferOptions& options,
                                        std::span<const WireTransfer> transfers,
                                        const RankSlotWeights& sources);

}  // namespace grace
