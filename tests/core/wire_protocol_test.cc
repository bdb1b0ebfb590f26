#include "core/wire_protocol.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

std::vector<WireMessage> OneOfEach() {
  Challenge c;
  c.nonce[0] = 7;
  Hello h;
  h.agent_id = "node1";
  h.node = 1;
  h.ranks = {2, 3};
  h.slots_per_rank = 9;
  h.epoch = 4;
  h.proof = ProveSecret("s3cret", c.nonce);
  LoadReport lr;
  lr.step_from = 10;
  lr.step_to = 20;
  lr.num_layers = 2;
  lr.num_experts = 3;
  lr.counts = {1, 2, 3, 4, 5, 6};
  lr.coactivation = {{1, 0, 2, 9}};
  Prepare p;
  p.epoch = 5;
  p.placement_json = R"({"physical_to_logical_map":[[0,1]]})";
  p.expected_load = {0.5f, 1.5f};
  p.transfers = {{0, 1, 3, 4, 1234}};
  return {c,
          h,
          Welcome{4, "{}", {1.0f, 2.0f}, 500, 1000},
          Refused{"bad proof"},
          Heartbeat{99, 4},
          lr,
          p,
          Ready{5},
          Commit{5, 120},
          Abort{5, "agent node1 lost"},
          Switched{5, 120}};
}

TEST(WireProtocolTest, EveryMessageRoundTripsEvenByteByByte) {
  std::string stream;
  for (const WireMessage& m : OneOfEach()) stream += EncodeFrame(m);
  FrameDecoder decoder;
  std::vector<WireMessage> got;
  for (char byte : stream) {
    decoder.Append(std::string_view(&byte, 1));
    WireMessage m;
    auto more = decoder.Next(&m);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (*more) got.push_back(m);
  }
  const std::vector<WireMessage> want = OneOfEach();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(TypeOf(got[i]), TypeOf(want[i]));
    EXPECT_EQ(EncodeFrame(got[i]), EncodeFrame(want[i])) << MessageTypeName(TypeOf(want[i]));
  }
  const auto& hello = std::get<Hello>(got[1]);
  EXPECT_EQ(hello.ranks, (std::vector<RankId>{2, 3}));
  EXPECT_EQ(std::get<LoadReport>(got[5]).counts[5], 6u);
  EXPECT_EQ(std::get<Prepare>(got[6]).transfers[0].bytes, 1234u);
  EXPECT_EQ(std::get<Prepare>(got[6]).expected_load[1], 1.5f);
}

TEST(WireProtocolTest, BadMagicVersionLengthAndChecksumAreErrorsWithOffset) {
  const std::string good = EncodeFrame(Heartbeat{1, 1});
  auto decode = [](std::string bytes, uint32_t limit = kDefaultMaxPayloadBytes) {
    FrameDecoder d(limit);
    d.Append(EncodeFrame(Ready{1}));  // one good frame first: offsets must count it
    d.Append(bytes);
    WireMessage m;
    EXPECT_TRUE(d.Next(&m).ok());
    auto r = d.Next(&m);
    EXPECT_FALSE(r.ok());
    // The decoder stays failed.
    EXPECT_FALSE(d.Next(&m).ok());
    return r.ok() ? std::string() : r.status().message();
  };
  std::string bad_magic = good;
  bad_magic[0] ^= 0x5a;
  EXPECT_NE(decode(bad_magic).find("bad frame magic (frame at stream offset 24)"),
            std::string::npos);
  std::string bad_version = good;
  bad_version[4] = 9;
  EXPECT_NE(decode(bad_version).find("unsupported protocol version 9"), std::string::npos);
  EXPECT_NE(decode(good, 8).find("exceeds the limit of 8"), std::string::npos);
  std::string bad_crc = good;
  bad_crc.back() ^= 1;
  EXPECT_NE(decode(bad_crc).find("checksum mismatch"), std::string::npos);
}

TEST(WireProtocolTest, PayloadErrorsNameTheField) {
  auto truncated = DecodePayload(MessageType::kHello, std::string("\x05\x00\x00\x00no", 6));
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.status().message().find("agent_id"), std::string::npos);
  auto trailing = DecodePayload(MessageType::kReady, std::string(9, '\0'));
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.status().message().find("trailing"), std::string::npos);
  LoadReport lr;
  lr.num_layers = 2;
  lr.num_experts = 2;
  lr.counts = {1, 2, 3};  // 3 counts for 2 x 2
  std::string frame = EncodeFrame(lr);
  auto mismatched = DecodePayload(MessageType::kLoadReport, frame.substr(kFrameHeaderBytes));
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.status().message().find("3 counts for 2 layers"), std::string::npos);
  EXPECT_FALSE(DecodePayload(static_cast<MessageType>(77), "").ok());
}

TEST(WireProtocolTest, ProofDependsOnSecretAndNonce) {
  Challenge c1, c2;
  c2.nonce[31] = 1;
  EXPECT_TRUE(ProofsEqual(ProveSecret("k", c1.nonce), ProveSecret("k", c1.nonce)));
  EXPECT_FALSE(ProofsEqual(ProveSecret("k", c1.nonce), ProveSecret("K", c1.nonce)));
  EXPECT_FALSE(ProofsEqual(ProveSecret("k", c1.nonce), ProveSecret("k", c2.nonce)));
}

}  // namespace
}  // namespace grace
