#include "core/wire_protocol.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/byte_io.h"
#include "core/checksum.h"

namespace grace {
namespace {

// Bounds on counts inside payloads, well above any real cluster, so a garbled length can never
// make the decoder allocate gigabytes.
constexpr uint32_t kMaxRanks = 1 << 16;
constexpr uint32_t kMaxCounts = 1 << 24;
constexpr uint32_t kMaxPairs = 1 << 22;
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
  }
  void operator()(const Welcome& m) {
    w.Put<uint64_t>(m.epoch);
    w.PutString(m.placement_json);
    w.PutArray<float>(m.expected_load);
    w.Put<uint32_t>(m.heartbeat_ms);
    w.Put<uint32_t>(m.report_ms);
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
    w.Put<uint32_t>(static_cast<uint32_t>(m.coactivation.size()));
    for (const LoadReport::Pair& p : m.coactivation) {
      w.Put<uint32_t>(p.layer_index);
      w.Put<uint16_t>(p.a);
      w.Put<uint16_t>(p.b);
      w.Put<uint32_t>(p.count);
    }
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
  }
  void operator()(const Switched& m) {
    w.Put<uint64_t>(m.epoch);
    w.Put<uint64_t>(m.step);
  }
};

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
      return WireMessage(m);
    }
    case MessageType::kWelcome: {
      Welcome m;
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      GRACE_RETURN_IF_ERROR(r.GetString("placement_json", &m.placement_json, kMaxJson));
      GRACE_RETURN_IF_ERROR(r.GetArray("expected_load", &m.expected_load, kMaxCounts));
      GRACE_RETURN_IF_ERROR(r.Get("heartbeat_ms", &m.heartbeat_ms));
      GRACE_RETURN_IF_ERROR(r.Get("report_ms", &m.report_ms));
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
      uint32_t pairs = 0;
      GRACE_RETURN_IF_ERROR(r.Get("coactivation count", &pairs));
      if (pairs > kMaxPairs) return DataLoss("load report: too many co-activation pairs");
      m.coactivation.resize(pairs);
      for (LoadReport::Pair& p : m.coactivation) {
        GRACE_RETURN_IF_ERROR(r.Get("pair layer", &p.layer_index));
        GRACE_RETURN_IF_ERROR(r.Get("pair a", &p.a));
        GRACE_RETURN_IF_ERROR(r.Get("pair b", &p.b));
        GRACE_RETURN_IF_ERROR(r.Get("pair count", &p.count));
        if (p.layer_index >= m.num_layers || p.a >= m.num_experts || p.b >= m.num_experts) {
          return DataLoss("load report: co-activation pair out of range");
        }
      }
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
      return WireMessage(m);
    }
    case MessageType::kSwitched: {
      Switched m;
      GRACE_RETURN_IF_ERROR(r.Get("epoch", &m.epoch));
      GRACE_RETURN_IF_ERROR(r.Get("step", &m.step));
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
  }
  return "Unknown";
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
