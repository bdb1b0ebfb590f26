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
// LoadReport (version 2): the per-expert counts, then two length-prefixed sections, each of
// which the decoder may refuse on its own (the reason in `coactivation_error` or
// `traffic_error`, the section emptied) while the counts, decoded strictly, are kept:
//   co-activation  per layer, the agent's top `max_pairs` sampled pairs, with the sampled pair
//                  mass and the part of it dropped beyond the top pairs;
//   traffic        per rank and layer, what the real dispatch sent and computed, counted by
//                  the cost model's deduplication (policy/cost_model.h).
// A report of L layers x E experts with P = max_pairs, R ranks of S slots is at most
// LoadReportMaxBytes(L, E, P, R, S) bytes, frame header included:
//   16 + 28 + 4 L E                       header and counts
//   + 16 + L (24 + 8 min(P, E (E - 1) / 2)) co-activation
//   + 12 + R (4 + L (48 + 4 S))             traffic
// (docs/live-signal.md works it out for 3 x 64 and 58 x 256).
//
// Plain values and a single-connection decoder; no I/O here (daemon/ and agent/ own sockets).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/ids.h"
#include "core/status.h"

namespace grace {

inline constexpr uint32_t kWireMagic = 0x57435247;  // "GRCW" little-endian
inline constexpr uint16_t kWireVersion = 2;
inline constexpr size_t kFrameHeaderBytes = 16;
inline constexpr uint32_t kDefaultMaxPayloadBytes = 64u << 20;
// The most co-activation pairs one report may carry per layer (an agent's max_pairs is at most
// this), and the most slots per rank a traffic section may carry.
inline constexpr uint32_t kMaxCoactivationPairsPerLayer = 4096;
inline constexpr uint32_t kMaxTrafficSlotsPerRank = 4096;

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
  kGoodbye = 12,
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
  // The placement of that epoch (core/placement.h JSON; empty when fresh), so that a daemon
  // whose history is behind (a lost grace.db) can adopt it. Optional on the wire: it follows
  // the proof, and a Hello without it decodes with it empty.
  std::string placement_json;
  // The agent's challenge to the daemon, answered by Welcome::daemon_proof (optional on the
  // wire, after placement_json).
  std::optional<std::array<uint8_t, 32>> daemon_nonce;
  // Spare expert slots per layer on each of its ranks ([migration].spare_slots): how many new
  // experts one migration round may stage there. Optional on the wire, after daemon_nonce (sent
  // only with it); absent: not limited.
  std::optional<int32_t> spare_slots;
};

struct Welcome {
  Epoch epoch = 0;
  std::string placement_json;  // the current placement (core/placement.h JSON)
  // Expected per-expert load of each layer ([layer][expert]), from which every rank derives the
  // same locality routing weights (policy/locality_routing.h); empty: uniform weights.
  std::vector<float> expected_load;
  uint32_t heartbeat_ms = 1000;
  uint32_t report_ms = 1000;
  // HMAC-SHA256(cluster secret, Hello::daemon_nonce): the daemon proves the secret too (sent
  // when the Hello carried a nonce; optional on the wire, last).
  std::optional<std::array<uint8_t, 32>> daemon_proof;
};

struct Refused {
  std::string reason;
};

struct Heartbeat {
  uint64_t step = 0;
  Epoch epoch = 0;
};

// What one rank's dispatch sent and computed in one layer over a report's steps. Sends follow
// the cost model's deduplication (policy/cost_model.h): a token homed on rank h counts once per
// distinct GPU other than h that serves it and once per distinct node other than h's that does.
struct DispatchCounts {
  uint64_t tokens = 0;               // tokens homed on the rank
  uint64_t node_sends = 0;           // distinct other GPUs of the home node, summed over tokens
  uint64_t remote_sends = 0;         // distinct GPUs other than home (node_sends included)
  uint64_t cross_node_sends = 0;     // distinct nodes other than the home node
  uint64_t intra_node_bytes = 0;     // node_sends x token bytes
  uint64_t cross_node_bytes = 0;     // cross_node_sends x token bytes
  std::vector<uint32_t> slot_pairs;  // [local slot] (token, expert) pairs computed there
};

// Per-expert load over steps [step_from, step_to) of every layer this agent serves, plus the
// co-activation and traffic sections (see the top of this file).
struct LoadReport {
  uint64_t step_from = 0;
  uint64_t step_to = 0;
  uint32_t num_layers = 0;
  uint32_t num_experts = 0;
  std::vector<uint32_t> counts;  // [layer][expert]

  // Co-activation: pairs of experts chosen by the same token, counted on 1 token in
  // `sample_every` (counts are as sampled, not scaled up).
  struct Pair {
    uint16_t a = 0, b = 0;  // a != b
    uint32_t count = 0;
  };
  struct CoactivationLayer {
    uint32_t layer_index = 0;   // ascending, < num_layers
    uint64_t sampled_mass = 0;  // every sampled pair count of the layer, sent or not
    uint64_t dropped_mass = 0;  // the part of it beyond the top pairs (not sent)
    std::vector<Pair> pairs;    // at most max_pairs, highest counts first
  };
  uint32_t coactivation_sample_every = 1;
  uint32_t coactivation_max_pairs = 0;
  std::vector<CoactivationLayer> coactivation;  // layers with sampled pairs only

  // Traffic: one entry per rank of the agent, each with num_layers DispatchCounts.
  struct RankTraffic {
    RankId rank = 0;  // ascending
    std::vector<DispatchCounts> layers;
  };
  uint32_t slots_per_rank = 0;  // of every DispatchCounts::slot_pairs
  std::vector<RankTraffic> traffic;

  // Set by the decoder, never sent: why a section was refused (empty: accepted).
  std::string coactivation_error;
  std::string traffic_error;
};

// The largest LoadReport frame, in bytes, for these sizes (the formula at the top).
uint64_t LoadReportMaxBytes(uint64_t layers, uint64_t experts, uint64_t max_pairs, uint64_t ranks,
                            uint64_t slots_per_rank);

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

// Why an agent aborts a migration; optional on the wire, after the reason (sent when not kOther).
enum class AbortCause : uint8_t {
  kOther = 0,
  // Weights received over the migration mesh did not match their source's digest
  // (migrate/weight_digest.h); graced counts these.
  kWeightIntegrity = 1,
};

struct Abort {
  Epoch epoch = 0;
  std::string reason;
  AbortCause cause = AbortCause::kOther;
};

struct Switched {
  Epoch epoch = 0;
  uint64_t step = 0;
};

// An agent leaving on purpose (SIGTERM) after its last report: the daemon marks it "left", not
// lost. `step`: the first step it did not run.
struct Goodbye {
  uint64_t step = 0;
  std::string reason;
};

using WireMessage = std::variant<Challenge, Hello, Welcome, Refused, Heartbeat, LoadReport, Prepare,
                                 Ready, Commit, Abort, Switched, Goodbye>;

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
  // Applies to frames not yet decoded (a server raises it once the peer proved itself).
  void set_max_payload_bytes(uint32_t max_payload_bytes) { max_payload_ = max_payload_bytes; }

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
