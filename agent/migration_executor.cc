#include "agent/migration_executor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "migrate/weight_digest.h"

namespace grace {
namespace {

using Clock = std::chrono::steady_clock;

// Sleeps before the next chunk while the copy runs ahead of its rate or the data path is slow.
class Pacer {
 public:
  Pacer(const TransferOptions& o) : o_(o), start_(Clock::now()) {}

  Status BeforeChunk(uint64_t bytes_done, double* paused_s) {
    for (int i = 0; i < 50; ++i) {
      if (o_.cancel != nullptr && o_.cancel->load(std::memory_order_relaxed)) {
        return Aborted("migration cancelled");
      }
      if (o_.progress == nullptr) break;
      const uint64_t last = o_.progress->last_step_us.load(std::memory_order_relaxed);
      const uint64_t base = o_.progress->baseline_step_us.load(std::memory_order_relaxed);
      if (base == 0 || last <= o_.step_budget * base) break;
      const auto t0 = Clock::now();
      std::this_thread::sleep_for(std::chrono::microseconds(std::max<uint64_t>(base, 200)));
      *paused_s += std::chrono::duration<double>(Clock::now() - t0).count();
    }
    if (o_.max_bytes_per_s > 0) {
      const auto due = start_ + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(bytes_done / o_.max_bytes_per_s));
      const auto t0 = Clock::now();
      if (due > t0) {
        std::this_thread::sleep_until(due);
        *paused_s += std::chrono::duration<double>(Clock::now() - t0).count();
      }
    }
    return Status::Ok();
  }

 private:
  const TransferOptions& o_;
  Clock::time_point start_;
};

}  // namespace

StatusOr<StagedCopies> RunRankTransfers(const TransferOptions& o,
                                        std::span<const WireTransfer> transfers,
                                        const RankSlotWeights& sources) {
  const RankId me = o.mesh.rank;
  const size_t expert_bytes = o.expert_floats * sizeof(float);
  auto rank_of = [&](SlotId s) { return static_cast<RankId>(s / o.slots_per_rank); };
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
  Pacer pacer(o);
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
