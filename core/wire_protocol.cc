#include "core/wire_protocol.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "core/byte_io.h"
#include "core/checksum.h"

namespace grace {
namespace {

// Bounds on counts inside payloads, well above any real cluster, so a garbled length can never
// make the decoder allocate gigabytes.
constexpr uint32_t kMaxRanks = 1 << 16;
constexpr uint32_t kMaxCounts = 1 << 24;
constexpr uint32_t kMaxTransfers = 1 << 22;
constexpr uint32_t kMaxJson = 48u << 20;

template <size_t N>
void PutBytes(ByteWriter& w, const std::array<uint8_t, N>& a) {
  for (uint8_t b : a) w.Put(b);
}
template <size_t N>
Status GetBytes(ByteReader& r, const char* field, std::array<uint8_t, N>* a) {
  for (uint8_t& b : *a) GRACE_RETURN_IF_ERROR(r.Get(field, &b));
  return Status::Ok();
}

struct Encoder {
  ByteWriter& w;
  void operator()(const Challenge& m) { PutBytes(w, m.nonce); }
  void operator()(const Hello& m) {
    w.PutString(m.agent_id);
    w.Put<int32_t>(m.node);
    w.PutArray<RankId>(m.ranks);
    w.Put<int32_t>(m.slots_per_rank);
    w.Put<uint64_t>(m.epoch);
    PutBytes(w, m.proof);
    if (!m.placement_json.empty() || m.daemon_nonce) w.PutString(m.placement_json);
    if (m.daemon_nonce) PutBytes(w, *m.daemon_nonce);
    if (m.daemon_nonce && m.spare_slots) w.Put<int32_t>(*m.spare_slots);
  }
  void operator()(const Welcome& m) {
    w.Put<uint64_t>(m.epoch);
    w.PutString(m.placement_json);
    w.PutArray<float>(m.expected_load);
    w.Put<uint32_t>(m.heartbeat_ms);
    w.Put<uint32_t>(m.report_ms);
    if (m.daemon_proof) PutBytes(w, *m.daemon_proof);
  }
  void operator()(const Refused& m) { w.PutString(m.reason); }
  void operator()(const Heartbeat& m) {
    w.Put<uint64_t>(m.step);
    w.Put<uint64_t>(m.epoch);
  }
  void operator()(const LoadReport& m) {
    w.Put<uint64_t>(m.step_from);
    w.Put<uint64_t>(m.step_to);
    w.Put<uint32_t>(m.num_layers);
    w.Put<uint32_t>(m.num_experts);
    w.PutArray<uint32_t>(m.counts);
    const size_t coactivation_at = BeginSection();
    w.Put<uint32_t>(m.coactivation_sample_every);
    w.Put<uint32_t>(m.coactivation_max_pairs);
    w.Put<uint32_t>(static_cast<uint32_t>(m.coactivation.size()));
    for (const LoadReport::CoactivationLayer& l : m.coactivation) {
      w.Put<uint32_t>(l.layer_index);
      w.Put<uint32_t>(static_cast<uint32_t>(l.pairs.size()));
      w.Put<uint64_t>(l.sampled_mass);
      w.Put<uint64_t>(l.dropped_mass);
      for (const LoadReport::Pair& p : l.pairs) {
        w.Put<uint16_t>(p.a);
        w.Put<uint16_t>(p.b);
        w.Put<uint32_t>(p.count);
      }
    }
    EndSection(coactivation_at);
    const size_t traffic_at = BeginSection();
    w.Put<uint32_t>(m.slots_per_rank);
    w.Put<uint32_t>(static_cast<uint32_t>(m.traffic.size()));
    for (const LoadReport::RankTraffic& r : m.traffic) {
      w.Put<int32_t>(r.rank);
      for (const DispatchCounts& d : r.layers) {
        for (uint64_t v : {d.tokens, d.node_sends, d.remote_sends, d.cross_node_sends,
                           d.intra_node_bytes, d.cross_node_bytes}) {
          w.Put<uint64_t>(v);
        }
        for (uint32_t v : d.slot_pairs) w.Put<uint32_t>(v);
      }
    }
    EndSection(traffic_at);
  }
  // A section is its byte length, then its bytes.
  size_t BeginSection() {
    w.Put<uint32_t>(0);
    return w.bytes().size();
  }
  void EndSection(size_t at) {
    const uint32_t n = static_cast<uint32_t>(w.bytes().size() - at);
    std::memcpy(w.bytes().data() + at - sizeof n, &n, sizeof n);
  }
  void operator()(const Prepare& m) {
    w.Put<uint64_t>(m.epoch);
    w.PutString(m.placement_json);
    w.PutArray<float>(m.expected_load);
    w.Put<uint32_t>(static_cast<uint32_t>(m.transfers.size()));
    for (const WireTransfer& t : m.transfers) {
      w.Put<int32_t>(t.layer_index);
      w.Put<int32_t>(t.expert);
      w.Put<int32_t>(t.src_slot);
      w.Put<int32_t>(t.dst_slot);
      w.Put<uint64_t>(t.bytes);
    }
  }
  void operator()(const Ready& m) { w.Put<uint64_t>(m.epoch); }
  void operator()(const Commit& m) {
    w.Put<uint64_t>(m.epoch);
    w.Put<uint64_t>(m.switch_step);
  }
  void operator()(const Abort& m) {
    w.Put<uint64_t>(m.epoch);
    w.PutString(m.reason);
    if (m.cause != AbortCause::kOther) w.Put<uint8_t>(static_cast<uint8_t>(m.cause));
  }
  void operator()(const Switched& m) {
    w.Put<uint64_t>(m.epoch);
    w.Put<uint64_t>(m.step);
  }
  void operator()(const Goodbye& m) {
    w.Put<uint64_t>(m.step);
    w.PutString(m.reason);
  }
};

std::string Str(uint64_t v) {
  return std::to_string(v);
}

static_assert(sizeof(LoadReport::Pair) == 8 && offsetof(LoadReport::Pair, b) == 2 &&
                  offsetof(LoadReport::Pair, count) == 4,
              "a co-activation pair on the wire is a u16, a u16 and a u32");

// The co-activation section's bytes into m; an error names the field at fault.
Status DecodeCoactivation(std::string_view bytes, LoadReport* m) {
  ByteReader r(bytes);
  uint32_t layers = 0;
  GRACE_RETURN_IF_ERROR(r.Get("sample_every", &m->coactivation_sample_every));
  GRACE_RETURN_IF_ERROR(r.Get("max_pairs", &m->coactivation_max_pairs));
  GRACE_RETURN_IF_ERROR(r.Get("layer count", &layers));
  if (m->coactivation_sample_every == 0) return DataLoss("sample_every is 0");
  if (m->coactivation_max_pairs > kMaxCoactivationPairsPerLayer) {
    return DataLoss("max_pairs " + Str(m->coactivation_max_pairs) + " exceeds the bound of " +
                    Str(kMaxCoactivationPairsPerLayer));
  }
  if (layers > m->num_layers) {
    return DataLoss("layer count " + Str(layers) + " exceeds num_layers " + Str(m->num_layers));
  }
  if (bytes.size() - r.position() < layers * 24ull) {  // each layer's entry is 24 bytes or more
    return DataLoss("truncated at the layers (" + Str(layers) + " layers need at least " +
                    Str(layers * 24ull) + " bytes, " + Str(bytes.size() - r.position()) + " left)");
  }
  m->coactivation.resize(layers);
  int64_t previous = -1;
  for (LoadReport::CoactivationLayer& l : m->coactivation) {
    uint32_t pairs = 0;
    GRACE_RETURN_IF_ERROR(r.Get("layer_index", &l.layer_index));
    GRACE_RETURN_IF_ERROR(r.Get("pair count", &pairs));
    GRACE_RETURN_IF_ERROR(r.Get("sampled_mass", &l.sampled_mass));
    GRACE_RETURN_IF_ERROR(r.Get("dropped_mass", &l.dropped_mass));
    const std::string at = "layer_index " + Str(l.layer_index);
    if (l.layer_index >= m->num_layers) {
      return DataLoss(at + ": not below num_layers " + Str(m->num_layers));
    }
    if (static_cast<int64_t>(l.layer_index) <= previous) {
      return DataLoss(at + ": layers must ascend, each once");
    }
    previous = l.layer_index;
    if (pairs > m->coactivation_max_pairs) {
      return DataLoss(at + ": pair count " + Str(pairs) + " exceeds max_pairs " +
                      Str(m->coactivation_max_pairs));
    }
    std::string_view records;
    if (!r.GetView("pairs", pairs * 8, &records).ok()) {
      return DataLoss(at + ": truncated at the pairs (" + Str(pairs) + " pairs need " +
                      Str(pairs * 8ull) + " bytes, " + Str(bytes.size() - r.position()) + " left)");
    }
    // The records are Pair's own layout (a, b, count; little-endian): one copy, then checks.
    l.pairs.resize(pairs);
    if (pairs > 0) std::memcpy(l.pairs.data(), records.data(), records.size());
    uint64_t sent = 0;
    for (const LoadReport::Pair& p : l.pairs) {
      if (p.a >= m->num_experts || p.b >= m->num_experts) {
        return DataLoss(at + ": pair (" + Str(p.a) + ", " + Str(p.b) +
                        ") has an expert id not below num_experts " + Str(m->num_experts));
      }
      if (p.a == p.b)
        return DataLoss(at + ": pair (" + Str(p.a) + ", " + Str(p.b) + ") has a == b");
      sent += p.count;
    }
    if (l.dropped_mass > l.sampled_mass || sent != l.sampled_mass - l.dropped_mass) {
      return DataLoss(at + ": sampled_mass " + Str(l.sampled_mass) + " is not the pairs' " +
                      Str(sent) + " plus dropped_mass " + Str(l.dropped_mass));
    }
  }
  return r.ExpectEnd("section");
}

Status DecodeTraffic(std::string_view bytes, LoadReport* m) {
  ByteReader r(bytes);
  uint32_t ranks = 0;
  GRACE_RETURN_IF_ERROR(r.Get("slots_per_rank", &m->slots_per_rank));
  GRACE_RETURN_IF_ERROR(r.Get("rank count", &ranks));
  if (m->slots_per_rank > kMaxTrafficSlotsPerRank) {
    return DataLoss("slots_per_rank " + Str(m->slots_per_rank) + " exceeds the bound of " +
                    Str(kMaxTrafficSlotsPerRank));
  }
  // Every entry has the same size, so the length is known before anything is allocated.
  const uint64_t per_rank = 4 + uint64_t{m->num_layers} * (48 + 4ull * m->slots_per_rank);
  if (ranks > kMaxRanks || bytes.size() - r.position() != ranks * per_rank) {
    return DataLoss("rank count " + Str(ranks) + " x " + Str(per_rank) + " bytes per rank for " +
                    Str(m->num_layers) + " layers does not fill the section's " +
                    Str(bytes.size() - r.position()) + " bytes");
  }
  m->traffic.resize(ranks);
  int64_t previous = -1;
  for (LoadReport::RankTraffic& t : m->traffic) {
    GRACE_RETURN_IF_ERROR(r.Get("rank", &t.rank));
    if (t.rank < 0 || t.rank <= previous) {
      return DataLoss("rank " + std::to_string(t.rank) + ": ranks must ascend from 0, each once");
    }
    previous = t.rank;
    t.layers.resize(m->num_layers);
    for (size_t l = 0; l < t.layers.size(); ++l) {
      DispatchCounts& d = t.layers[l];
      for (uint64_t* v : {&d.tokens, &d.node_sends, &d.remote_sends, &d.cross_node_sends,
                          &d.intra_node_bytes, &d.cross_node_bytes}) {
        GRACE_RETURN_IF_ERROR(r.Get("counts", v));
      }
      d.slot_pairs.resize(m->slots_per_rank);
      for (uint32_t& v : d.slot_pairs) GRACE_RETURN_IF_ERROR(r.Get("slot_pairs", &v));
      if (d.node_sends + d.cross_node_sends > d.remote_sends) {
        return DataLoss("rank " + std::to_string(t.rank) + " layer_index " + Str(l) +
                        ": node_sends " + Str(d.node_sends) + " + cross_node_sends " +
                        Str(d.cross_node_sends) + " exceed remote_sends " + Str(d.remote_sends));
      }
    }
  }
  return r.ExpectEnd("section");
}

// The sections after the counts. Each is refused on its own: its error is recorded and it is
// emptied, and the counts stand. A section whose length is cut off or runs past the payload
// takes the rest of the payload with it (the traffic section cannot be found after it).
void DecodeLoadReportSections(ByteReader& r, LoadReport* m) {
  struct Section {
    const char* name;
    std::string* error;
    Status (*decode)(std::string_view, LoadReport*);
  };
  const Section sections[] = {{"co-activation section", &m->coactivation_error, DecodeCoactivation},
                              {"traffic section", &m->traffic_error, DecodeTraffic}};
  bool lost = false;
  for (const Section& s : sections) {
    uint32_t bytes = 0;
    Status status =
        lost ? DataLoss("not found after the previous section") : r.Get("section length", &bytes);
    std::string_view body;
    if (status.ok()) status = r.GetView("section", bytes, &body);
    lost = !status.ok();  // the section's end is unknown, and so is the next one's start
    if (status.ok()) status = s.decode(body, m);
    if (status.ok()) continue;
    *s.error = std::string(s.name) + ": " + status.message();
    if (s.error == &m->coactivation_error) {
      m->coactivation_sample_every = 1;
      m->coactivation_max_pairs = 0;
      m->coactivation.clear();
    } else {
      m->slots_per_rank = 0;
      m->traffic.clear();
    }
  }
  if (lost) r.SkipToEnd();
}

StatusOr<WireMessage> DecodeBody(MessageType type, ByteReader& r) {
  switch (type) {
    case MessageType::kChallenge: {
      Challenge m;
      GRACE_RETURN_IF_ERROR(GetBytes(r, "nonce", &m.nonce));
      return WireMessage(m);
    }
    case MessageType::kHello: {
      Hello m;
      GRACE_RETURN_IF_ERROR(r.GetString("agent_id", &m.agent_id, 256));
      GRACE_RETURN_IF_ERROR(r.Get("node", &m.node));
      GRACE_RETURN_IF_ERROR(r.GetArray("ranks", &m.ranks, kMaxRanks));
      GRACE_RETURN_IF_ERROR(r.Get("slots_per_rank", &m.slots_per_rank));
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      GRACE_RETURN_IF_ERROR(GetBytes(r, "proof", &m.proof));
      if (r.position() < r.size()) {
        GRACE_RETURN_IF_ERROR(r.GetString("placement_json", &m.placement_json, kMaxJson));
      }
      if (r.position() < r.size()) {
        GRACE_RETURN_IF_ERROR(GetBytes(r, "daemon_nonce", &m.daemon_nonce.emplace()));
      }
      if (r.position() < r.size()) {
        GRACE_RETURN_IF_ERROR(r.Get("spare_slots", &m.spare_slots.emplace()));
        if (*m.spare_slots < 0) return InvalidArgument("Hello: spare_slots is negative");
      }
      return WireMessage(m);
    }
    case MessageType::kWelcome: {
      Welcome m;
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      GRACE_RETURN_IF_ERROR(r.GetString("placement_json", &m.placement_json, kMaxJson));
      GRACE_RETURN_IF_ERROR(r.GetArray("expected_load", &m.expected_load, kMaxCounts));
      GRACE_RETURN_IF_ERROR(r.Get("heartbeat_ms", &m.heartbeat_ms));
      GRACE_RETURN_IF_ERROR(r.Get("report_ms", &m.report_ms));
      if (r.position() < r.size()) {
        GRACE_RETURN_IF_ERROR(GetBytes(r, "daemon_proof", &m.daemon_proof.emplace()));
      }
      return WireMessage(m);
    }
    case MessageType::kRefused: {
      Refused m;
      GRACE_RETURN_IF_ERROR(r.GetString("reason", &m.reason, 4096));
      return WireMessage(m);
    }
    case MessageType::kHeartbeat: {
      Heartbeat m;
      GRACE_RETURN_IF_ERROR(r.Get("step", &m.step));
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      return WireMessage(m);
    }
    case MessageType::kLoadReport: {
      LoadReport m;
      GRACE_RETURN_IF_ERROR(r.Get("step_from", &m.step_from));
      GRACE_RETURN_IF_ERROR(r.Get("step_to", &m.step_to));
      GRACE_RETURN_IF_ERROR(r.Get("num_layers", &m.num_layers));
      GRACE_RETURN_IF_ERROR(r.Get("num_experts", &m.num_experts));
      GRACE_RETURN_IF_ERROR(r.GetArray("counts", &m.counts, kMaxCounts));
      if (static_cast<uint64_t>(m.num_layers) * m.num_experts != m.counts.size()) {
        return DataLoss("load report: " + std::to_string(m.counts.size()) + " counts for " +
                        std::to_string(m.num_layers) + " layers x " +
                        std::to_string(m.num_experts) + " experts");
      }
      DecodeLoadReportSections(r, &m);
      return WireMessage(std::move(m));
    }
    case MessageType::kPrepare: {
      Prepare m;
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      GRACE_RETURN_IF_ERROR(r.GetString("placement_json", &m.placement_json, kMaxJson));
      GRACE_RETURN_IF_ERROR(r.GetArray("expected_load", &m.expected_load, kMaxCounts));
      uint32_t n = 0;
      GRACE_RETURN_IF_ERROR(r.Get("transfer count", &n));
      if (n > kMaxTransfers) return DataLoss("prepare: too many transfers");
      m.transfers.resize(n);
      for (WireTransfer& t : m.transfers) {
        GRACE_RETURN_IF_ERROR(r.Get("transfer layer", &t.layer_index));
        GRACE_RETURN_IF_ERROR(r.Get("transfer expert", &t.expert));
        GRACE_RETURN_IF_ERROR(r.Get("transfer src_slot", &t.src_slot));
        GRACE_RETURN_IF_ERROR(r.Get("transfer dst_slot", &t.dst_slot));
        GRACE_RETURN_IF_ERROR(r.Get("transfer bytes", &t.bytes));
      }
      return WireMessage(std::move(m));
    }
    case MessageType::kReady: {
      Ready m;
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      return WireMessage(m);
    }
    case MessageType::kCommit: {
      Commit m;
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      GRACE_RETURN_IF_ERROR(r.Get("switch_step", &m.switch_step));
      return WireMessage(m);
    }
    case MessageType::kAbort: {
      Abort m;
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      GRACE_RETURN_IF_ERROR(r.GetString("reason", &m.reason, 4096));
      if (r.position() < r.size()) {
        uint8_t cause = 0;
        GRACE_RETURN_IF_ERROR(r.Get("cause", &cause));
        if (cause > static_cast<uint8_t>(AbortCause::kWeightIntegrity)) {
          return InvalidArgument("Abort: cause " + std::to_string(cause) + " is unknown");
        }
        m.cause = static_cast<AbortCause>(cause);
      }
      return WireMessage(m);
    }
    case MessageType::kSwitched: {
      Switched m;
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      GRACE_RETURN_IF_ERROR(r.Get("step", &m.step));
      return WireMessage(m);
    }
    case MessageType::kGoodbye: {
      Goodbye m;
      GRACE_RETURN_IF_ERROR(r.Get("step", &m.step));
      GRACE_RETURN_IF_ERROR(r.GetString("reason", &m.reason, 4096));
      return WireMessage(m);
    }
  }
  return DataLoss("unknown message type " + std::to_string(static_cast<int>(type)));
}

}  // namespace

MessageType TypeOf(const WireMessage& message) {
  return static_cast<MessageType>(message.index() + 1);  // variant order follows MessageType
}

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kChallenge: return "Challenge";
    case MessageType::kHello: return "Hello";
    case MessageType::kWelcome: return "Welcome";
    case MessageType::kRefused: return "Refused";
    case MessageType::kHeartbeat: return "Heartbeat";
    case MessageType::kLoadReport: return "LoadReport";
    case MessageType::kPrepare: return "Prepare";
    case MessageType::kReady: return "Ready";
    case MessageType::kCommit: return "Commit";
    case MessageType::kAbort: return "Abort";
    case MessageType::kSwitched: return "Switched";
    case MessageType::kGoodbye: return "Goodbye";
  }
  return "Unknown";
}

uint64_t LoadReportMaxBytes(uint64_t layers, uint64_t experts, uint64_t max_pairs, uint64_t ranks,
                            uint64_t slots_per_rank) {
  const uint64_t pairs = std::min(max_pairs, experts * (experts - (experts > 0 ? 1 : 0)) / 2);
  return kFrameHeaderBytes + 28 + 4 * layers * experts             // header and counts
         + 16 + layers * (24 + 8 * pairs)                          // co-activation
         + 12 + ranks * (4 + layers * (48 + 4 * slots_per_rank));  // traffic
}

std::string EncodeFrame(const WireMessage& message) {
  ByteWriter payload;
  std::visit(Encoder{payload}, message);
  ByteWriter frame;
  frame.Put<uint32_t>(kWireMagic);
  frame.Put<uint16_t>(kWireVersion);
  frame.Put<uint16_t>(static_cast<uint16_t>(TypeOf(message)));
  frame.Put<uint32_t>(static_cast<uint32_t>(payload.bytes().size()));
  frame.Put<uint32_t>(Crc32c(payload.bytes().data(), payload.bytes().size()));
  frame.bytes().append(payload.bytes());
  return std::move(frame.bytes());
}

StatusOr<WireMessage> DecodePayload(MessageType type, std::string_view payload) {
  ByteReader r(payload);
  GRACE_ASSIGN_OR_RETURN(WireMessage m, DecodeBody(type, r));
  GRACE_RETURN_IF_ERROR(r.ExpectEnd(MessageTypeName(type)));
  return m;
}

StatusOr<bool> FrameDecoder::Next(WireMessage* out) {
  GRACE_RETURN_IF_ERROR(failed_);
  if (buffer_.size() < kFrameHeaderBytes) return false;
  ByteReader header(std::string_view(buffer_).substr(0, kFrameHeaderBytes));
  uint32_t magic = 0, length = 0, crc = 0;
  uint16_t version = 0, type = 0;
  (void)header.Get("magic", &magic);
  (void)header.Get("version", &version);
  (void)header.Get("type", &type);
  (void)header.Get("length", &length);
  (void)header.Get("crc", &crc);
  const std::string at = " (frame at stream offset " + std::to_string(consumed_) + ")";
  if (magic != kWireMagic)
    failed_ = DataLoss("bad frame magic" + at);
  else if (version != kWireVersion) {
    failed_ = DataLoss("unsupported protocol version " + std::to_string(version) + ", expected " +
                       std::to_string(kWireVersion) + at);
  } else if (length > max_payload_) {
    failed_ = DataLoss("frame payload of " + std::to_string(length) +
                       " bytes exceeds the limit of " + std::to_string(max_payload_) + at);
  }
  GRACE_RETURN_IF_ERROR(failed_);
  if (buffer_.size() - kFrameHeaderBytes < length) return false;
  std::string_view payload = std::string_view(buffer_).substr(kFrameHeaderBytes, length);
  if (Crc32c(payload.data(), payload.size()) != crc) {
    failed_ = DataLoss("frame checksum mismatch" + at);
    return failed_;
  }
  StatusOr<WireMessage> m = DecodePayload(static_cast<MessageType>(type), payload);
  if (!m.ok()) {
    failed_ =
        m.status().WithContext(std::string(MessageTypeName(static_cast<MessageType>(type))) + at);
    return failed_;
  }
  *out = std::move(m).value();
  buffer_.erase(0, kFrameHeaderBytes + length);
  consumed_ += kFrameHeaderBytes + length;
  return true;
}

std::array<uint8_t, 32> ProveSecret(std::string_view secret, const std::array<uint8_t, 32>& nonce) {
  std::array<uint8_t, 32> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), nonce.data(), nonce.size(),
       mac.data(), &len);
  return mac;
}

bool ProofsEqual(const std::array<uint8_t, 32>& a, const std::array<uint8_t, 32>& b) {
  return ConstantTimeEquals(std::string_view(reinterpret_cast<const char*>(a.data()), a.size()),
                            std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace grace
