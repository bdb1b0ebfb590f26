// The digest of migrated expert weights: keyed from the cluster secret, bound to the layer, the
// expert and the target epoch, so a digest passes for those bytes of that expert of that
// migration only; without a secret a plain SHA-256 of the same message.
#include "migrate/weight_digest.h"

#include <openssl/sha.h>

#include <vector>

#include <gtest/gtest.h>

namespace grace {
namespace {

std::vector<uint8_t> Bytes() {
  std::vector<uint8_t> b(1000);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7);
  return b;
}

TEST(WeightDigestTest, BindsLayerExpertEpochAndEveryByte) {
  auto d = ExpertDigester::FromClusterSecret("cluster-secret");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->keyed());
  std::vector<uint8_t> bytes = Bytes();
  const ExpertDigest digest = d->Digest(3, 17, 5, bytes);
  EXPECT_TRUE(DigestsEqual(digest, d->Digest(3, 17, 5, bytes)));
  EXPECT_FALSE(DigestsEqual(digest, d->Digest(4, 17, 5, bytes)));  // another layer
  EXPECT_FALSE(DigestsEqual(digest, d->Digest(3, 18, 5, bytes)));  // another expert
  EXPECT_FALSE(DigestsEqual(digest, d->Digest(3, 17, 6, bytes)));  // another migration
  bytes[999] ^= 1;
  EXPECT_FALSE(DigestsEqual(digest, d->Digest(3, 17, 5, bytes)));  // one bit flipped
  bytes[999] ^= 1;
  bytes.pop_back();
  EXPECT_FALSE(DigestsEqual(digest, d->Digest(3, 17, 5, bytes)));  // one byte short
}

TEST(WeightDigestTest, OnlyTheClusterSecretMakesTheDigest) {
  auto ours = ExpertDigester::FromClusterSecret("cluster-secret");
  auto theirs = ExpertDigester::FromClusterSecret("another-cluster");
  auto unkeyed = ExpertDigester::FromClusterSecret("");
  ASSERT_TRUE(ours.ok() && theirs.ok() && unkeyed.ok());
  const std::vector<uint8_t> bytes = Bytes();
  EXPECT_FALSE(DigestsEqual(ours->Digest(0, 1, 2, bytes), theirs->Digest(0, 1, 2, bytes)));
  EXPECT_FALSE(unkeyed->keyed());
  EXPECT_FALSE(DigestsEqual(ours->Digest(0, 1, 2, bytes), unkeyed->Digest(0, 1, 2, bytes)));
  // Unkeyed, anyone can compute it: a plain SHA-256 is no secret, and not the keyed one either.
  ExpertDigest plain{};
  SHA256(bytes.data(), bytes.size(), plain.data());
  EXPECT_FALSE(DigestsEqual(plain, unkeyed->Digest(0, 1, 2, bytes)));  // the header is bound in
}

TEST(WeightDigestTest, AStreamOverPiecesEqualsTheDigestOfTheWhole) {
  for (const char* secret : {"cluster-secret", ""}) {
    auto d = ExpertDigester::FromClusterSecret(secret);
    ASSERT_TRUE(d.ok());
    const std::vector<uint8_t> bytes = Bytes();
    const std::span<const uint8_t> all(bytes);
    ExpertDigestStream s = d->Begin(3, 17, 5, bytes.size());
    s.Update(all.first(1));
    s.Update(all.subspan(1, 0));
    s.Update(all.subspan(1, 600));
    s.Update(all.subspan(601));
    const ExpertDigest streamed = s.Final();
    EXPECT_TRUE(DigestsEqual(streamed, d->Digest(3, 17, 5, bytes))) << secret;
    EXPECT_NE(streamed, ExpertDigest{});
    // Fed fewer bytes than announced: a zero digest, which matches no real one.
    ExpertDigestStream short_one = d->Begin(3, 17, 5, bytes.size());
    short_one.Update(all.first(999));
    EXPECT_EQ(short_one.Final(), ExpertDigest{});
  }
}

TEST(WeightDigestTest, AMismatchIsAnIntegrityErrorNamingLayerExpertAndSource) {
  const Status s = WeightIntegrityError(1, 42, 3, 7, "HMAC-SHA256");
  EXPECT_TRUE(IsWeightIntegrityError(s));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("layer index 1 expert 42 from rank 3 for epoch 7"), std::string::npos)
      << s.message();
  EXPECT_FALSE(IsWeightIntegrityError(DataLoss("tcp transport: rank 1 sent 3 bytes")));
}

}  // namespace
}  // namespace grace
