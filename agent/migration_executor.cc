#include "agent/migration_executor.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "agent/copy_pacer.h"

#include "migrate/weight_digest.h"

namespace grace {

void WarnIfModeledBytesDiffer(std::span<const WireTransfer> transfers, size_t expert_bytes) {
  // The daemon's byte counts are its cost model's (bf16 experts of the cluster it plans for);
  // the transfer list says which expert moves where, and this agent copies its own buffers.
  for (const WireTransfer& t : transfers) {
    if (t.bytes != expert_bytes) {
      static std::once_flag warned;
      std::call_once(warned, [&] {
        std::fprintf(stderr,
                     "grace-agent: the daemon models %llu bytes per expert, this agent's experts "
                     "are %zu bytes (another dtype or a modeled cluster): copying %zu\n",
                     static_cast<unsigned long long>(t.bytes), expert_bytes, expert_bytes);
      });
      break;
    }
  }
}

StatusOr<StagedCopies> RunRankTransfers(const TransferOptions& o,
                                        std::span<const WireTransfer> transfers,
                                        const RankSlotWeights& sources) {
  const RankId me = o.mesh.rank;
  const size_t expert_bytes = o.expert_floats * sizeof(float);
  auto rank_of = [&](SlotId s) { return static_cast<RankId>(s / o.slots_per_rank); };
  WarnIfModeledBytesDiffer(transfers, expert_bytes);
  // Every rank joins the mesh, even one with nothing to move, so the rendezvous completes.
  std::unique_ptr<TcpTransport> mesh;
  if (o.mesh.size > 1) {
    GRACE_ASSIGN_OR_RETURN(mesh, TcpTransport::Connect(o.mesh));
  }
  GRACE_ASSIGN_OR_RETURN(const ExpertDigester digester,
                         ExpertDigester::FromClusterSecret(o.mesh.cluster_secret));
  auto digest_of = [&](const WireTransfer& t, const std::vector<float>& w) {
    return digester.Digest(t.layer_index, t.expert, o.target_epoch,
                           {reinterpret_cast<const uint8_t*>(w.data()), expert_bytes});
  };
  StagedCopies out;
  CopyPacer pacer(o.max_bytes_per_s, o.step_budget, o.progress, o.cancel);
  uint64_t done = 0;
  for (const WireTransfer& t : transfers) {
    const RankId src = rank_of(t.src_slot), dst = rank_of(t.dst_slot);
    if (src != me && dst != me) continue;
    const int local_src = t.src_slot % o.slots_per_rank;
    const std::vector<float>* from = nullptr;
    if (src == me) {
      if (t.layer_index < 0 || t.layer_index >= static_cast<int>(sources.size()) ||
          sources[t.layer_index][local_src] == nullptr) {
        return FailedPrecondition("transfer source slot " + std::to_string(t.src_slot) +
                                  " of layer " + std::to_string(t.layer_index) +
                                  " holds no weights on rank " + std::to_string(me));
      }
      from = sources[t.layer_index][local_src].get();
    }
    std::shared_ptr<std::vector<float>> into;
    if (dst == me) into = std::make_shared<std::vector<float>>(o.expert_floats);
    if (src == me && dst == me) {
      GRACE_RETURN_IF_ERROR(pacer.BeforeChunk(done, &out.paused_s));
      std::memcpy(into->data(), from->data(), expert_bytes);
      done += expert_bytes;
    } else {
      // Digested before the first chunk leaves: the digest vouches for the source's bytes.
      const ExpertDigest source_digest = src == me ? digest_of(t, *from) : ExpertDigest{};
      for (size_t off = 0; off < expert_bytes; off += o.chunk_bytes) {
        const size_t n = std::min(o.chunk_bytes, expert_bytes - off);
        GRACE_RETURN_IF_ERROR(pacer.BeforeChunk(done, &out.paused_s));
        if (src == me) {
          GRACE_RETURN_IF_ERROR(
              mesh->Send(dst, reinterpret_cast<const char*>(from->data()) + off, n));
          out.bytes_sent += n;
        } else {
          GRACE_RETURN_IF_ERROR(mesh->Recv(src, reinterpret_cast<char*>(into->data()) + off, n));
        }
        done += n;
      }
      // The source's digest follows the last chunk; what was received must match it.
      if (src == me) {
        GRACE_RETURN_IF_ERROR(mesh->Send(dst, source_digest.data(), source_digest.size()));
      } else {
        ExpertDigest sent{};
        GRACE_RETURN_IF_ERROR(mesh->Recv(src, sent.data(), sent.size()));
        if (!DigestsEqual(sent, digest_of(t, *into))) {
          return WeightIntegrityError(t.layer_index, t.expert, src, o.target_epoch,
                                      digester.algorithm());
        }
      }
    }
    if (dst == me) {
      out.bytes_in += expert_bytes;
      out.staged.push_back({t.layer_index, t.dst_slot, t.expert, std::move(into)});
    }
  }
  return out;
}

}  // namespace grace
