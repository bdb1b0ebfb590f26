#include "agent/device_migration_executor.h"

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>

#include "agent/copy_pacer.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_expert_backend.h"
#include "kernels/cuda_grouped_ffn.h"
#include "migrate/nccl_migration_channel.h"
#include "migrate/tcp_transport.h"
#include "migrate/weight_digest.h"

namespace grace {
namespace {

constexpr const char* kPartNames[3] = {"w1", "w3", "w2"};

// An expert's device bytes (w1, w3, w2 of one slot) read back through one pinned host buffer,
// chunk by chunk on the channel's stream, into its digest: the NCCL path's integrity check, as
// the TCP path digests its host buffers (migrate/weight_digest.h).
class DeviceDigestReader {
 public:
  DeviceDigestReader(const ExpertDigester& digester, Epoch epoch, size_t chunk_bytes,
                     cudaStream_t stream)
      : digester_(digester), epoch_(epoch), chunk_bytes_(chunk_bytes), stream_(stream) {}

  StatusOr<ExpertDigest> Digest(const WireTransfer& t, const DeviceSlotWeights& w,
                                size_t part_bytes) {
    GRACE_RETURN_IF_ERROR(host_.Resize(chunk_bytes_));
    ExpertDigestStream d = digester_.Begin(t.layer_index, t.expert, epoch_, 3 * part_bytes);
    for (int part = 0; part < 3; ++part) {
      const auto* from = reinterpret_cast<const std::byte*>(w.part[part]);
      for (size_t off = 0; off < part_bytes; off += chunk_bytes_) {
        const size_t n = std::min(chunk_bytes_, part_bytes - off);
        GRACE_RETURN_IF_ERROR(CudaStatus(
            cudaMemcpyAsync(host_.data(), from + off, n, cudaMemcpyDeviceToHost, stream_),
            "reading an expert back for its digest (cudaMemcpyAsync)"));
        GRACE_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream_),
                                         "reading an expert back for its digest (sync)"));
        d.Update({host_.data(), n});
      }
    }
    return d.Final();
  }
  const char* algorithm() const { return digester_.algorithm(); }

 private:
  const ExpertDigester& digester_;
  const Epoch epoch_;
  const size_t chunk_bytes_;
  const cudaStream_t stream_;
  PinnedArray<uint8_t> host_;
};

// One rank's walk over the transfer list; fills `out` as it goes, so that the caller can return
// the slots it took when it fails.
class DeviceTransferWalk {
 public:
  DeviceTransferWalk(const DeviceTransferOptions& o, ExpertBackend& backend, CudaGroupedFfn& ffn,
                     TcpTransport& mesh, NcclMigrationChannel& channel,
                     const ExpertDigester& digester, const SlotMap& current,
                     DeviceStagedCopies& out)
      : o_(o.transfer),
        backend_(backend),
        ffn_(ffn),
        mesh_(mesh),
        channel_(channel),
        digests_(digester, o.transfer.target_epoch, o.transfer.chunk_bytes,
                 static_cast<cudaStream_t>(channel.stream())),
        current_(current),
        next_(current),
        out_(out),
        pacer_(o_.max_bytes_per_s, o_.step_budget, o_.progress, o_.cancel) {}

  Status Run(std::span<const WireTransfer> transfers) {
    for (const WireTransfer& t : transfers) GRACE_RETURN_IF_ERROR(Move(t));
    out_.staging.map = std::make_shared<const SlotMap>(std::move(next_));
    return Status::Ok();
  }

 private:
  RankId RankOf(SlotId s) const { return static_cast<RankId>(s / o_.slots_per_rank); }

  Status Move(const WireTransfer& t) {
    const RankId me = channel_.rank(), src = RankOf(t.src_slot), dst = RankOf(t.dst_slot);
    if (src != me && dst != me) return Status::Ok();
    if (t.layer_index < 0 || t.layer_index >= current_.num_layers()) {
      return InvalidArgument("transfer of expert " + std::to_string(t.expert) + " names layer " +
                             std::to_string(t.layer_index) + "; the model has " +
                             std::to_string(current_.num_layers()));
    }
    DeviceSlotWeights from, into;
    if (src == me) {
      const int physical = current_.physical(t.layer_index, t.src_slot % o_.slots_per_rank);
      GRACE_ASSIGN_OR_RETURN(from, ffn_.SlotWeights(t.layer_index, physical));
    }
    if (dst == me) {
      const int local = t.dst_slot % o_.slots_per_rank;
      StatusOr<int> p = AcquireCudaSpareSlot(backend_, t.layer_index);
      if (!p.ok()) {
        return p.status().WithContext("rank " + std::to_string(me) + " layer " +
                                      std::to_string(t.layer_index) + " slot " +
                                      std::to_string(t.dst_slot));
      }
      out_.staging.acquired.emplace_back(t.layer_index, *p);
      out_.staging.replaced.emplace_back(t.layer_index, next_.physical(t.layer_index, local));
      next_ = next_.With(t.layer_index, local, *p);
      GRACE_ASSIGN_OR_RETURN(into, ffn_.SlotWeights(t.layer_index, *p));
      // The spare may have been named by a map the data path switched away from only lately.
      GRACE_RETURN_IF_ERROR(ffn_.OrderAfterMapSwitch(static_cast<cudaStream_t>(channel_.stream())));
    }
    const size_t part_bytes = ffn_.SlotElements() * sizeof(uint16_t);
    const std::string what = "layer " + std::to_string(t.layer_index) + " expert " +
                             std::to_string(t.expert) + " from slot " + std::to_string(t.src_slot) +
                             " to slot " + std::to_string(t.dst_slot);
    // Between ranks the source digests its slot before the first chunk leaves (the digest
    // vouches for the source's bytes); a copy within the rank, as on the TCP path, has none.
    ExpertDigest source_digest{};
    if (src == me && dst != me) {
      GRACE_ASSIGN_OR_RETURN(source_digest, digests_.Digest(t, from, part_bytes));
    }
    for (int part = 0; part < 3; ++part) {
      for (size_t off = 0; off < part_bytes; off += o_.chunk_bytes) {
        const size_t n = std::min(o_.chunk_bytes, part_bytes - off);
        GRACE_RETURN_IF_ERROR(pacer_.BeforeChunk(done_, &out_.copies.paused_s));
        const std::string phase = what + ", " + kPartNames[part] + " bytes [" +
                                  std::to_string(off) + ", " + std::to_string(off + n) + ") of " +
                                  std::to_string(part_bytes);
        const std::byte* send =
            src == me ? reinterpret_cast<const std::byte*>(from.part[part]) + off : nullptr;
        std::byte* recv = dst == me ? reinterpret_cast<std::byte*>(into.part[part]) + off : nullptr;
        if (src == me && dst == me) {
          GRACE_RETURN_IF_ERROR(channel_.CopyChunk(send, recv, n, phase));
        } else if (src == me) {
          GRACE_RETURN_IF_ERROR(channel_.SendChunk(dst, send, n, phase));
          out_.copies.bytes_sent += n;
        } else {
          GRACE_RETURN_IF_ERROR(channel_.RecvChunk(src, recv, n, phase));
        }
        done_ += n;
      }
    }
    // The source's digest follows the last chunk over the mesh; what landed must match it.
    if (src == me && dst != me) {
      GRACE_RETURN_IF_ERROR(mesh_.Send(dst, source_digest.data(), source_digest.size()));
    } else if (dst == me && src != me) {
      ExpertDigest sent{};
      GRACE_RETURN_IF_ERROR(mesh_.Recv(src, sent.data(), sent.size()));
      GRACE_ASSIGN_OR_RETURN(const ExpertDigest landed, digests_.Digest(t, into, part_bytes));
      if (!DigestsEqual(sent, landed)) {
        return WeightIntegrityError(t.layer_index, t.expert, src, o_.target_epoch,
                                    digests_.algorithm());
      }
    }
    if (dst == me) {
      out_.copies.bytes_in += 3 * part_bytes;
      out_.copies.staged.push_back({t.layer_index, t.dst_slot, t.expert, nullptr});
    }
    return Status::Ok();
  }

  const TransferOptions& o_;
  ExpertBackend& backend_;
  CudaGroupedFfn& ffn_;
  TcpTransport& mesh_;
  NcclMigrationChannel& channel_;
  DeviceDigestReader digests_;
  const SlotMap& current_;
  SlotMap next_;
  DeviceStagedCopies& out_;
  CopyPacer pacer_;
  uint64_t done_ = 0;
};

}  // namespace

StatusOr<DeviceStagedCopies> RunRankDeviceTransfers(const DeviceTransferOptions& options,
                                                    std::span<const WireTransfer> transfers,
                                                    ExpertBackend& backend,
                                                    const SlotMap& current) {
  CudaGroupedFfn* ffn = CudaGroupedFfnOf(backend);
  if (ffn == nullptr) {
    return FailedPrecondition(std::string("[migration].transport = \"nccl\" copies device slots; "
                                          "it needs the cuda expert backend, not ") +
                              backend.name());
  }
  const TransferOptions& o = options.transfer;
  if (o.slots_per_rank < 1 || o.chunk_bytes == 0) {
    return InvalidArgument("device transfers need slots_per_rank >= 1 and chunk_bytes > 0");
  }
  WarnIfModeledBytesDiffer(transfers, 3 * ffn->SlotElements() * sizeof(uint16_t));
  GRACE_ASSIGN_OR_RETURN(const ExpertDigester digester,
                         ExpertDigester::FromClusterSecret(o.mesh.cluster_secret));
  // Every rank joins the mesh and the communicator, even one with nothing to move, so both
  // rendezvous complete.
  GRACE_ASSIGN_OR_RETURN(std::unique_ptr<TcpTransport> mesh, TcpTransport::Connect(o.mesh));
  GRACE_ASSIGN_OR_RETURN(
      std::unique_ptr<NcclMigrationChannel> channel,
      NcclMigrationChannel::Create(*mesh, {.device = ffn->device(), .timeout = options.timeout}));
  DeviceStagedCopies out;
  Status walked =
      DeviceTransferWalk(options, backend, *ffn, *mesh, *channel, digester, current, out)
          .Run(transfers);
  // Every rank finishes its walk before any communicator goes: tearing one down while a peer
  // still copies could fail that peer's chunks.
  if (walked.ok()) walked = mesh->Barrier().WithContext("after the device copies");
  if (!walked.ok()) {
    // The channel's stream is drained when it goes (an aborted communicator's kernels end), so
    // nothing writes the slots once they are back in the pool.
    channel.reset();
    ReleaseSlots(backend, out.staging.acquired);
    return walked;
  }
  return out;
}

}  // namespace grace
