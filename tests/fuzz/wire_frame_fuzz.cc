// libFuzzer target: arbitrary bytes into the agent/daemon frame decoder, split at a fuzzer-chosen
// point. It must never crash, hang or read out of bounds; it either yields messages or fails
// cleanly. Any message it yields must re-encode to a frame that decodes to the same bytes.
//
// The same bytes also go straight to the LoadReport payload decoder (no checksum to get past),
// so mutations reach its co-activation and traffic sections: a section it accepts must satisfy
// the bounds it promises, a refused one must be empty, and the report re-encodes to a payload
// that decodes cleanly to the same bytes. Seeds: wire_frame_seeds (scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/wire_protocol.h"

namespace {

void CheckLoadReportPayload(std::string_view payload) {
  auto decoded = grace::DecodePayload(grace::MessageType::kLoadReport, payload);
  if (!decoded.ok()) return;
  const grace::LoadReport& r = std::get<grace::LoadReport>(*decoded);
  if (!r.coactivation_error.empty() && !r.coactivation.empty()) __builtin_trap();
  if (!r.traffic_error.empty() && !r.traffic.empty()) __builtin_trap();
  for (const grace::LoadReport::CoactivationLayer& l : r.coactivation) {
    if (l.layer_index >= r.num_layers || l.pairs.size() > r.coactivation_max_pairs ||
        r.coactivation_max_pairs > grace::kMaxCoactivationPairsPerLayer) {
      __builtin_trap();
    }
    for (const grace::LoadReport::Pair& p : l.pairs) {
      if (p.a == p.b || p.a >= r.num_experts || p.b >= r.num_experts) __builtin_trap();
    }
  }
  for (const grace::LoadReport::RankTraffic& t : r.traffic) {
    if (t.layers.size() != r.num_layers) __builtin_trap();
  }
  const std::string again = grace::EncodeFrame(r).substr(grace::kFrameHeaderBytes);
  auto redecoded = grace::DecodePayload(grace::MessageType::kLoadReport, again);
  if (!redecoded.ok()) __builtin_trap();
  const grace::LoadReport& r2 = std::get<grace::LoadReport>(*redecoded);
  if (!r2.coactivation_error.empty() || !r2.traffic_error.empty()) __builtin_trap();
  if (grace::EncodeFrame(r2).substr(grace::kFrameHeaderBytes) != again) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t split = data[0] % (size);
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  grace::FrameDecoder decoder(1 << 16);
  decoder.Append(bytes.substr(0, split));
  for (int round = 0; round < 2; ++round) {
    grace::WireMessage m;
    while (true) {
      auto more = decoder.Next(&m);
      if (!more.ok() || !*more) break;
      const std::string again = grace::EncodeFrame(m);
      grace::FrameDecoder check;
      check.Append(again);
      grace::WireMessage m2;
      auto ok = check.Next(&m2);
      if (!ok.ok() || !*ok || grace::EncodeFrame(m2) != again) __builtin_trap();
    }
    if (round == 0 && split < bytes.size()) decoder.Append(bytes.substr(split));
  }
  // A seed is a stream of frames; as a payload, the first frame's (past its header) is the
  // interesting start.
  CheckLoadReportPayload(bytes);
  if (bytes.size() > grace::kFrameHeaderBytes) {
    CheckLoadReportPayload(bytes.substr(grace::kFrameHeaderBytes));
  }
  return 0;
}
