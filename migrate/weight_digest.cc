// The one place the migration's weight digests meet OpenSSL (HMAC, SHA-256; the key from
// core/hkdf.h).
#include "migrate/weight_digest.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#include <memory>

#include "core/hkdf.h"

namespace grace {
namespace {

constexpr std::string_view kStatusPrefix = "weight integrity: ";

// The header digested before the bytes: a version tag, then the fields the digest binds.
std::array<uint8_t, 32> Header(int layer_index, int expert, Epoch epoch, uint64_t bytes) {
  std::array<uint8_t, 32> h{};
  const char tag[8] = {'g', 'r', 'c', 'w', 'e', 'v', '1', 0};
  size_t at = 0;
  auto put = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h[at++] = b[i];
  };
  auto put_le = [&](uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) h[at++] = static_cast<uint8_t>(v >> (8 * i));
  };
  put(tag, sizeof tag);
  put_le(static_cast<uint32_t>(layer_index), 4);
  put_le(static_cast<uint32_t>(expert), 4);
  put_le(epoch, 8);
  put_le(bytes, 8);
  return h;
}

}  // namespace

StatusOr<ExpertDigester> ExpertDigester::FromClusterSecret(std::string_view cluster_secret) {
  ExpertDigester d;
  if (cluster_secret.empty()) return d;
  GRACE_RETURN_IF_ERROR(
      HkdfSha256(cluster_secret, "", kExpertDigestKeyLabel, d.key_).WithContext("weight digest"));
  d.keyed_ = true;
  return d;
}

// An HMAC-SHA256 (keyed) or SHA-256 context, the header already fed.
struct ExpertDigestStream::State {
  std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> mac{nullptr, &EVP_MAC_CTX_free};
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md{nullptr, &EVP_MD_CTX_free};
  uint64_t expected = 0, fed = 0;
  bool ok = false;
};

ExpertDigestStream::ExpertDigestStream(std::unique_ptr<State> state) : state_(std::move(state)) {}
ExpertDigestStream::ExpertDigestStream(ExpertDigestStream&&) noexcept = default;
ExpertDigestStream& ExpertDigestStream::operator=(ExpertDigestStream&&) noexcept = default;
ExpertDigestStream::~ExpertDigestStream() = default;

void ExpertDigestStream::Update(std::span<const uint8_t> bytes) {
  State& st = *state_;
  if (!st.ok || bytes.empty()) return;
  st.fed += bytes.size();
  st.ok = st.mac ? EVP_MAC_update(st.mac.get(), bytes.data(), bytes.size()) == 1
                 : EVP_DigestUpdate(st.md.get(), bytes.data(), bytes.size()) == 1;
}

ExpertDigest ExpertDigestStream::Final() {
  State& st = *state_;
  ExpertDigest out{};
  if (!st.ok || st.fed != st.expected) return out;
  bool done;
  if (st.mac) {
    size_t len = 0;
    done = EVP_MAC_final(st.mac.get(), out.data(), &len, out.size()) == 1 && len == out.size();
  } else {
    unsigned int len = 0;
    done = EVP_DigestFinal_ex(st.md.get(), out.data(), &len) == 1 && len == out.size();
  }
  st.ok = false;  // final once
  if (!done) out.fill(0);
  return out;
}

ExpertDigestStream ExpertDigester::Begin(int layer_index, int expert, Epoch epoch,
                                         uint64_t total_bytes) const {
  auto st = std::make_unique<ExpertDigestStream::State>();
  st->expected = total_bytes;
  const std::array<uint8_t, 32> header = Header(layer_index, expert, epoch, total_bytes);
  if (keyed_) {
    std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr),
                                                          &EVP_MAC_free);
    st->mac.reset(mac ? EVP_MAC_CTX_new(mac.get()) : nullptr);  // the context holds the MAC
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                           OSSL_PARAM_construct_end()};
    st->ok = st->mac && EVP_MAC_init(st->mac.get(), key_.data(), key_.size(), params) == 1 &&
             EVP_MAC_update(st->mac.get(), header.data(), header.size()) == 1;
  } else {
    st->md.reset(EVP_MD_CTX_new());
    st->ok = st->md && EVP_DigestInit_ex(st->md.get(), EVP_sha256(), nullptr) == 1 &&
             EVP_DigestUpdate(st->md.get(), header.data(), header.size()) == 1;
  }
  return ExpertDigestStream(std::move(st));
}

ExpertDigest ExpertDigester::Digest(int layer_index, int expert, Epoch epoch,
                                    std::span<const uint8_t> bytes) const {
  ExpertDigestStream s = Begin(layer_index, expert, epoch, bytes.size());
  s.Update(bytes);
  return s.Final();
}

bool DigestsEqual(const ExpertDigest& a, const ExpertDigest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Status WeightIntegrityError(int layer_index, int expert, RankId source_rank, Epoch epoch,
                            const char* algorithm) {
  return DataLoss(std::string(kStatusPrefix) + "the weights of layer index " +
                  std::to_string(layer_index) + " expert " + std::to_string(expert) +
                  " from rank " + std::to_string(source_rank) + " for epoch " +
                  std::to_string(epoch) + " do not match the " + algorithm +
                  " their source computed (corrupted in flight); nothing of them is staged");
}

bool IsWeightIntegrityError(const Status& s) {
  return s.code() == StatusCode::kDataLoss && s.message().starts_with(kStatusPrefix);
}

}  // namespace grace
