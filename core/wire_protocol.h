// The agent <-> daemon wire protocol: framed, versioned, length-limited binary messages.
//
// Frame: a 16-byte header (magic "GRCW", protocol version, message type, payload length, CRC-32C
// of the payload) and the payload. FrameDecoder takes bytes as they arrive from a socket and
// yields whole frames; a bad magic, an unknown version, a payload over the limit or a checksum
// mismatch is an error naming the byte offset in the stream, after which the connection is to be
// closed (the decoder stays failed).
//
// Handshake: the daemon sends Challenge (a random nonce); the agent answers Hello with
// HMAC-SHA256(cluster secret, nonce) as its proof, so the secret never crosses the wire; the
// daemon compares proofs in constant time and answers Welcome or Refused.
//
// Plain values and a single-connection decoder; no I/O here (daemon/ and agent/ own sockets).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/ids.h"
#include "core/status.h"

namespace grace {

inline constexpr uint32_t kWireMagic = 0x57435247;  // "GRCW" little-endian
inline constexpr uint16_t kWireVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 16;
inline constexpr uint32_t kDefaultMaxPayloadBytes = 64u << 20;

enum class MessageType : uint16_t {
  kChallenge = 1,
  kHello = 2,
  kWelcome = 3,
  kRefused = 4,
  kHeartbeat = 5,
  kLoadReport = 6,
  kPrepare = 7,
  kReady = 8,
  kCommit = 9,
  kAbort = 10,
  kSwitched = 11,
};

struct Challenge {
  std::array<uint8_t, 32> nonce{};
};

struct Hello {
  std::string agent_id;
  NodeId node = 0;
  std::vector<RankId> ranks;  // global rank ids this agent serves
  int32_t slots_per_rank = 0;
  Epoch epoch = 0;  // the epoch it serves now (0 when fresh)
  std::array<uint8_t, 32> proof{};
};

struct Welcome {
  Epoch epoch = 0;
  std::string placement_json;  // the current placement (core/placement.h JSON)
  // Expected per-expert load of each layer ([layer][expert]), from which every rank derives the
  // same locality routing weights (policy/locality_routing.h); empty: uniform weights.
  std::vector<float> expected_load;
  uint32_t heartbeat_ms = 1000;
  uint32_t report_ms = 1000;
};

struct Refused {
  std::string reason;
};

struct Heartbeat {
  uint64_t step = 0;
  Epoch epoch = 0;
};

// Per-expert load over steps [step_from, step_to) of every layer this agent serves, plus sampled
// within-layer co-activation pairs.
struct LoadReport {
  uint64_t step_from = 0;
  uint64_t step_to = 0;
  uint32_t num_layers = 0;
  uint32_t num_experts = 0;
  std::vector<uint32_t> counts;  // [layer][expert]
  struct Pair {
    uint32_t layer_index = 0;
    uint16_t a = 0;
    uint16_t b = 0;
    uint32_t count = 0;
  };
  std::vector<Pair> coactivation;
};

struct WireTransfer {
  int32_t layer_index = 0;
  ExpertId expert = 0;
  SlotId src_slot = 0;
  SlotId dst_slot = 0;
  uint64_t bytes = 0;
};

struct Prepare {
  Epoch epoch = 0;
  std::string placement_json;        // the placement of the new epoch
  std::vector<float> expected_load;  // as in Welcome, for the new epoch
  std::vector<WireTransfer> transfers;
};

struct Ready {
  Epoch epoch = 0;
};

struct Commit {
  Epoch epoch = 0;
  uint64_t switch_step = 0;
};

struct Abort {
  Epoch epoch = 0;
  std::string reason;
};

struct Switched {
  Epoch epoch = 0;
  uint64_t step = 0;
};

using WireMessage = std::variant<Challenge, Hello, Welcome, Refused, Heartbeat, LoadReport, Prepare,
                                 Ready, Commit, Abort, Switched>;

MessageType TypeOf(const WireMessage& message);
const char* MessageTypeName(MessageType type);

// A whole frame: header fields plus payload.
std::string EncodeFrame(const WireMessage& message);

// Splits a byte stream into messages. Single-connection, single-thread.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_payload_bytes = kDefaultMaxPayloadBytes)
      : max_payload_(max_payload_bytes) {}

  void Append(std::string_view bytes) { buffer_.append(bytes); }

  // Next whole message: true and *out set; false when more bytes are needed; an error when the
  // stream is bad (and every later call returns the same error).
  StatusOr<bool> Next(WireMessage* out);

 private:
  uint32_t max_payload_;
  std::string buffer_;
  uint64_t consumed_ = 0;  // stream offset of buffer_[0]
  Status failed_;
};

// Decodes one payload of the given type (exposed for tests and the fuzz target).
StatusOr<WireMessage> DecodePayload(MessageType type, std::string_view payload);

// HMAC-SHA256(secret, nonce), and a comparison whose time does not depend on where they differ.
std::array<uint8_t, 32> ProveSecret(std::string_view secret, const std::array<uint8_t, 32>& nonce);
bool ProofsEqual(const std::array<uint8_t, 32>& a, const std::array<uint8_t, 32>& b);
// Equality whose time depends only on the lengths (for secrets and API tokens).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace grace
