// libFuzzer target: arbitrary bytes into the agent/daemon frame decoder, split at a fuzzer-chosen
// point. It must never crash, hang or read out of bounds; it either yields messages or fails
// cleanly. Any message it yields must re-encode to a frame that decodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/wire_protocol.h"

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
  return 0;
}
