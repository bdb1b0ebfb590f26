#include "core/wire_protocol.h"

#include <array>
#include <cstring>

#include <gtest/gtest.h>

namespace grace {
namespace {

// 2 layers x 3 experts, co-activation in layer 1, traffic of ranks 4 and 5 with 2 slots each.
LoadReport ReportWithSections() {
  LoadReport lr;
  lr.step_from = 10;
  lr.step_to = 20;
  lr.num_layers = 2;
  lr.num_experts = 3;
  lr.counts = {1, 2, 3, 4, 5, 6};
  lr.coactivation_sample_every = 8;
  lr.coactivation_max_pairs = 2;
  lr.coactivation = {{1, 16, 4, {{0, 2, 9}, {1, 2, 3}}}};
  lr.slots_per_rank = 2;
  DispatchCounts d{7, 2, 5, 3, 2 * 256, 3 * 256, {4, 9}};
  lr.traffic = {{4, {d, DispatchCounts{0, 0, 0, 0, 0, 0, {0, 0}}}}, {5, {d, d}}};
  return lr;
}

std::string PayloadOf(const WireMessage& m) {
  return EncodeFrame(m).substr(kFrameHeaderBytes);
}

LoadReport DecodeReport(const std::string& payload) {
  auto m = DecodePayload(MessageType::kLoadReport, payload);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::get<LoadReport>(*m) : LoadReport{};
}

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
  LoadReport lr = ReportWithSections();
  Prepare p;
  p.epoch = 5;
  p.placement_json = R"({"physical_to_logical_map":[[0,1]]})";
  p.expected_load = {0.5f, 1.5f};
  p.transfers = {{0, 1, 3, 4, 1234}};
  return {c,
          h,
          Welcome{4, "{}", {1.0f, 2.0f}, 500, 1000, std::nullopt},
          Refused{"bad proof"},
          Heartbeat{99, 4},
          lr,
          p,
          Ready{5},
          Commit{5, 120},
          Abort{5, "agent node1 lost"},
          Switched{5, 120},
          Goodbye{77, "SIGTERM"}};
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

// An agent's ABORT says when received weights failed their digest; the cause is optional on the
// wire (an ABORT without it is kOther) and an unknown one is refused, naming the field.
TEST(WireProtocolTest, AnAbortCarriesItsCauseWhenItIsNotOther) {
  const Abort other{5, "out of memory"};
  const Abort integrity{5, "weight integrity: ...", AbortCause::kWeightIntegrity};
  EXPECT_EQ(EncodeFrame(integrity).size(), EncodeFrame(Abort{5, integrity.reason}).size() + 1);
  for (const Abort& a : {other, integrity}) {
    FrameDecoder d;
    d.Append(EncodeFrame(a));
    WireMessage m;
    auto more = d.Next(&m);
    ASSERT_TRUE(more.ok() && *more) << more.status().ToString();
    EXPECT_EQ(std::get<Abort>(m).cause, a.cause);
    EXPECT_EQ(std::get<Abort>(m).reason, a.reason);
  }
  std::string payload = EncodeFrame(integrity).substr(kFrameHeaderBytes);
  payload.back() = 9;
  auto bad = DecodePayload(MessageType::kAbort, payload);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cause 9"), std::string::npos) << bad.status().message();
}

TEST(WireProtocolTest, AHelloMayCarryItsPlacement) {
  Hello h;
  h.agent_id = "node1";
  h.epoch = 4;
  const std::string without = EncodeFrame(h);
  h.placement_json = R"({"physical_to_logical_map":[[0,1]]})";
  for (const std::string& frame : {without, EncodeFrame(h)}) {
    FrameDecoder d;
    d.Append(frame);
    WireMessage m;
    auto more = d.Next(&m);
    ASSERT_TRUE(more.ok() && *more) << more.status().ToString();
    EXPECT_EQ(std::get<Hello>(m).placement_json, frame == without ? "" : h.placement_json);
  }
}

TEST(WireProtocolTest, TheDaemonsChallengeAndProofAreOptional) {
  Hello h;
  h.agent_id = "node1";
  h.daemon_nonce.emplace().fill(3);  // a nonce without a placement
  Welcome w{4, "{}", {}, 500, 1000, std::nullopt};
  w.daemon_proof = ProveSecret("s", *h.daemon_nonce);
  for (const WireMessage& sent : {WireMessage(h), WireMessage(w), WireMessage(Welcome{})}) {
    FrameDecoder d;
    d.Append(EncodeFrame(sent));
    WireMessage m;
    auto more = d.Next(&m);
    ASSERT_TRUE(more.ok() && *more) << more.status().ToString();
    EXPECT_EQ(EncodeFrame(m), EncodeFrame(sent));
  }
}

TEST(WireProtocolTest, AHelloMayCarryItsSpareSlots) {
  Hello h;
  h.agent_id = "node1";
  h.daemon_nonce.emplace().fill(3);
  h.spare_slots = 2;
  Hello old = h;  // an agent that predates the field
  old.spare_slots.reset();
  for (const Hello& sent : {h, old}) {
    FrameDecoder d;
    d.Append(EncodeFrame(sent));
    WireMessage m;
    auto more = d.Next(&m);
    ASSERT_TRUE(more.ok() && *more) << more.status().ToString();
    EXPECT_EQ(std::get<Hello>(m).spare_slots, sent.spare_slots);
    EXPECT_EQ(EncodeFrame(m), EncodeFrame(sent));
  }
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

TEST(WireProtocolTest, CoactivationAndTrafficSurviveTheRoundTrip) {
  const LoadReport got = DecodeReport(PayloadOf(ReportWithSections()));
  EXPECT_TRUE(got.coactivation_error.empty()) << got.coactivation_error;
  EXPECT_TRUE(got.traffic_error.empty()) << got.traffic_error;
  EXPECT_EQ(got.counts, (std::vector<uint32_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(got.coactivation_sample_every, 8u);
  EXPECT_EQ(got.coactivation_max_pairs, 2u);
  ASSERT_EQ(got.coactivation.size(), 1u);
  const LoadReport::CoactivationLayer& l = got.coactivation[0];
  EXPECT_EQ(l.layer_index, 1u);
  EXPECT_EQ(l.sampled_mass, 16u);
  EXPECT_EQ(l.dropped_mass, 4u);
  ASSERT_EQ(l.pairs.size(), 2u);
  EXPECT_EQ(l.pairs[0].a, 0);
  EXPECT_EQ(l.pairs[0].b, 2);
  EXPECT_EQ(l.pairs[0].count, 9u);
  EXPECT_EQ(l.pairs[1].count, 3u);
  EXPECT_EQ(got.slots_per_rank, 2u);
  ASSERT_EQ(got.traffic.size(), 2u);
  EXPECT_EQ(got.traffic[1].rank, 5);
  ASSERT_EQ(got.traffic[1].layers.size(), 2u);
  const DispatchCounts& d = got.traffic[1].layers[1];
  EXPECT_EQ(d.tokens, 7u);
  EXPECT_EQ(d.node_sends, 2u);
  EXPECT_EQ(d.remote_sends, 5u);
  EXPECT_EQ(d.cross_node_sends, 3u);
  EXPECT_EQ(d.intra_node_bytes, 512u);
  EXPECT_EQ(d.cross_node_bytes, 768u);
  EXPECT_EQ(d.slot_pairs, (std::vector<uint32_t>{4, 9}));
}

// Every malformed co-activation section is refused by name, and the report's counts and its
// traffic section are still decoded.
TEST(WireProtocolTest, MalformedCoactivationIsRefusedByNameAndTheCountsKept) {
  auto refused = [](const std::string& payload) {
    const LoadReport got = DecodeReport(payload);
    EXPECT_EQ(got.counts, (std::vector<uint32_t>{1, 2, 3, 4, 5, 6}));
    EXPECT_TRUE(got.coactivation.empty());
    EXPECT_EQ(got.coactivation_sample_every, 1u);
    EXPECT_EQ(got.coactivation_error.rfind("co-activation section: ", 0), 0u)
        << got.coactivation_error;
    return got;
  };
  auto with = [&](auto change) {
    LoadReport lr = ReportWithSections();
    change(lr);
    const LoadReport got = refused(PayloadOf(lr));
    EXPECT_TRUE(got.traffic_error.empty()) << got.traffic_error;
    EXPECT_EQ(got.traffic.size(), 2u);
    return got.coactivation_error;
  };
  auto has = [](const std::string& error, const char* part) {
    return error.find(part) != std::string::npos;
  };
  EXPECT_PRED2(has, with([](LoadReport& r) { r.coactivation[0].layer_index = 2; }),
               "layer_index 2: not below num_layers 2");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.coactivation[0].pairs[1].b = 3; }),
               "pair (1, 3) has an expert id not below num_experts 3");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.coactivation[0].pairs[1].b = 1; }),
               "pair (1, 1) has a == b");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.coactivation_max_pairs = 1; }),
               "pair count 2 exceeds max_pairs 1");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.coactivation_max_pairs = 5000; }),
               "max_pairs 5000 exceeds the bound of 4096");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.coactivation_sample_every = 0; }),
               "sample_every is 0");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.coactivation[0].dropped_mass = 5; }),
               "sampled_mass 16 is not the pairs' 12 plus dropped_mass 5");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.coactivation.push_back(r.coactivation[0]); }),
               "layers must ascend");

  // Truncated inside: the section's length covers one byte less than its last pair.
  const std::string good = PayloadOf(ReportWithSections());
  const size_t at = 28 + 4 * 6;  // the co-activation section's length field
  uint32_t length = 0;
  std::memcpy(&length, good.data() + at, 4);
  std::string cut = good;
  cut.erase(at + 4 + length - 1, 1);
  const uint32_t shorter = length - 1;
  std::memcpy(cut.data() + at, &shorter, 4);
  LoadReport got = refused(cut);
  EXPECT_PRED2(has, got.coactivation_error, "layer_index 1: truncated at the pairs");
  EXPECT_EQ(got.traffic.size(), 2u);
  // A length past the payload's end: the traffic section cannot be found either.
  std::string overlong = good;
  const uint32_t huge = 1 << 30;
  std::memcpy(overlong.data() + at, &huge, 4);
  got = refused(overlong);
  EXPECT_PRED2(has, got.coactivation_error, "truncated at field 'section'");
  EXPECT_PRED2(has, got.traffic_error, "traffic section: not found after the previous section");
  // The payload ends after the counts.
  got = refused(good.substr(0, at + 2));
  EXPECT_PRED2(has, got.coactivation_error, "truncated at field 'section length'");

  // Through the frame decoder: the report arrives, the stream stays good.
  LoadReport bad = ReportWithSections();
  bad.coactivation[0].layer_index = 7;
  FrameDecoder decoder;
  decoder.Append(EncodeFrame(bad) + EncodeFrame(Heartbeat{1, 1}));
  WireMessage m;
  ASSERT_TRUE(*decoder.Next(&m));
  EXPECT_FALSE(std::get<LoadReport>(m).coactivation_error.empty());
  EXPECT_EQ(std::get<LoadReport>(m).counts[5], 6u);
  ASSERT_TRUE(*decoder.Next(&m));
  EXPECT_TRUE(std::holds_alternative<Heartbeat>(m));
}

TEST(WireProtocolTest, MalformedTrafficIsRefusedByNameAndTheRestKept) {
  auto with = [](auto change) {
    LoadReport lr = ReportWithSections();
    change(lr);
    const LoadReport got = DecodeReport(PayloadOf(lr));
    EXPECT_EQ(got.counts[0], 1u);
    EXPECT_EQ(got.coactivation.size(), 1u);
    EXPECT_TRUE(got.traffic.empty());
    EXPECT_EQ(got.traffic_error.rfind("traffic section: ", 0), 0u) << got.traffic_error;
    return got.traffic_error;
  };
  auto has = [](const std::string& error, const char* part) {
    return error.find(part) != std::string::npos;
  };
  EXPECT_PRED2(has, with([](LoadReport& r) { r.traffic[1].rank = 4; }), "ranks must ascend");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.traffic[0].layers[0].cross_node_sends = 4; }),
               "node_sends 2 + cross_node_sends 4 exceed remote_sends 5");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.traffic[0].layers.pop_back(); }),
               "does not fill the section");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.slots_per_rank = 3; }), "does not fill");
  EXPECT_PRED2(has, with([](LoadReport& r) { r.slots_per_rank = 5000; }),
               "slots_per_rank 5000 exceeds the bound of 4096");
  // Past the sections the decoder stays strict: trailing bytes fail the whole report.
  EXPECT_FALSE(DecodePayload(MessageType::kLoadReport, PayloadOf(ReportWithSections()) + "x").ok());
}

TEST(WireProtocolTest, FullReportsHaveTheDocumentedSize) {
  for (auto [layers, experts, ranks, slots] :
       {std::array<int, 4>{3, 64, 2, 18}, std::array<int, 4>{2, 8, 1, 3}}) {
    const int max_pairs = 512;
    LoadReport lr;
    lr.num_layers = layers;
    lr.num_experts = experts;
    lr.counts.assign(layers * experts, 1);
    lr.coactivation_max_pairs = max_pairs;
    for (int l = 0; l < layers; ++l) {
      LoadReport::CoactivationLayer cl{static_cast<uint32_t>(l), 0, 0, {}};
      for (int a = 0; a < experts && static_cast<int>(cl.pairs.size()) < max_pairs; ++a) {
        for (int b = a + 1; b < experts && static_cast<int>(cl.pairs.size()) < max_pairs; ++b) {
          cl.pairs.push_back({static_cast<uint16_t>(a), static_cast<uint16_t>(b), 1});
        }
      }
      cl.sampled_mass = cl.pairs.size();
      lr.coactivation.push_back(cl);
    }
    lr.slots_per_rank = slots;
    for (int r = 0; r < ranks; ++r) {
      lr.traffic.push_back(
          {r, std::vector<DispatchCounts>(layers, DispatchCounts{1, 0, 1, 1, 0, 8, {}})});
      for (DispatchCounts& d : lr.traffic.back().layers) d.slot_pairs.assign(slots, 1);
    }
    const std::string frame = EncodeFrame(lr);
    EXPECT_EQ(frame.size(), LoadReportMaxBytes(layers, experts, max_pairs, ranks, slots));
    const LoadReport got = DecodeReport(frame.substr(kFrameHeaderBytes));
    EXPECT_TRUE(got.coactivation_error.empty()) << got.coactivation_error;
    EXPECT_TRUE(got.traffic_error.empty()) << got.traffic_error;
  }
  EXPECT_EQ(LoadReportMaxBytes(3, 64, 512, 2, 18), 13928u);
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
