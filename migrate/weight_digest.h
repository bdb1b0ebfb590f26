// ExpertDigester: the integrity check of expert weights moved by a migration. The source rank
// digests an expert's bytes before it sends them over the migration mesh and sends the digest
// after the last chunk; the destination digests what it staged and stages nothing whose digest
// differs (agent/migration_executor.h), so a rank never reports READY on corrupted weights.
//
// The digest is HMAC-SHA256 keyed from the cluster secret (HKDF-SHA256 with a versioned label,
// so the key is bound to this use and the secret is never used raw), over a versioned header
// binding the layer index, the expert id and the target epoch, then the bytes: a digest of one
// expert cannot pass for another's, nor for another migration's. Without a cluster secret (a
// standalone or test cluster, whose meshes authenticate no one either) it is a plain SHA-256 over
// the same message: it still catches corruption in flight, not a forger.
//
//   GRACE_ASSIGN_OR_RETURN(ExpertDigester d, ExpertDigester::FromClusterSecret(secret));
//   ExpertDigest sent = d.Digest(layer, expert, epoch, bytes);
//   if (!DigestsEqual(sent, d.Digest(layer, expert, epoch, staged))) ... // WeightIntegrityError
//
// Bytes that are read in pieces (device memory read back chunk by chunk on the NCCL path,
// agent/device_migration_executor.h) go through an ExpertDigestStream, whose Final equals
// Digest over the pieces joined:
//
//   ExpertDigestStream s = d.Begin(layer, expert, epoch, total_bytes);
//   for (...) s.Update(piece);
//   ExpertDigest got = s.Final();
//
// Thread contract: an ExpertDigester is immutable after construction; Digest and Begin may be
// called from any number of threads at once. A stream belongs to one thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/ids.h"
#include "core/status.h"

namespace grace {

using ExpertDigest = std::array<uint8_t, 32>;

// The HKDF label (info) of the key; a new digest layout takes a new version.
inline constexpr std::string_view kExpertDigestKeyLabel = "grace migration expert digest v1";

// One expert's digest over its bytes fed in order; made by ExpertDigester::Begin.
class ExpertDigestStream {
 public:
  ExpertDigestStream(ExpertDigestStream&&) noexcept;
  ExpertDigestStream& operator=(ExpertDigestStream&&) noexcept;
  ~ExpertDigestStream();
  void Update(std::span<const uint8_t> bytes);
  // The digest; all zero (matching no real one, so the copy is refused) when OpenSSL failed or
  // the bytes fed were not the total Begin was told.
  ExpertDigest Final();

 private:
  friend class ExpertDigester;
  struct State;
  explicit ExpertDigestStream(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

class ExpertDigester {
 public:
  // Keyed (HMAC-SHA256) from a non-empty `cluster_secret`; plain SHA-256 when it is empty.
  static StatusOr<ExpertDigester> FromClusterSecret(std::string_view cluster_secret);

  ExpertDigest Digest(int layer_index, int expert, Epoch epoch,
                      std::span<const uint8_t> bytes) const;
  // The digest of `total_bytes` bytes that will be fed in pieces.
  ExpertDigestStream Begin(int layer_index, int expert, Epoch epoch, uint64_t total_bytes) const;
  bool keyed() const { return keyed_; }
  // "HMAC-SHA256" or "SHA-256", for messages.
  const char* algorithm() const { return keyed_ ? "HMAC-SHA256" : "SHA-256"; }

 private:
  ExpertDigester() = default;
  std::array<uint8_t, 32> key_{};
  bool keyed_ = false;
};

// Comparison whose time does not depend on where the digests differ.
bool DigestsEqual(const ExpertDigest& a, const ExpertDigest& b);

// The failure a destination rank reports when staged weights fail their digest: DataLoss,
// naming the layer index, the expert, the source rank and the epoch.
Status WeightIntegrityError(int layer_index, int expert, RankId source_rank, Epoch epoch,
                            const char* algorithm);
// Whether `s` is such a failure (it travels to graced as Abort's cause, counted there).
bool IsWeightIntegrityError(const Status& s);

}  // namespace grace
