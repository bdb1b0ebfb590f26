// libFuzzer target: the native trace reader on arbitrary bytes must return errors, never crash,
// hang or read out of bounds (scripts/fuzz.sh runs it for a bounded time).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/native_trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  grace::StatusOr<grace::NativeTraceReader> reader = grace::NativeTraceReader::FromMemory(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz.gtrace");
  if (!reader.ok()) return 0;
  grace::TraceStep step;
  for (int rewinds = 0; rewinds < 2; ++rewinds) {
    while (true) {
      grace::StatusOr<bool> more = reader->Next(&step);
      if (!more.ok() || !*more) break;
    }
    if (!reader->Rewind().ok()) break;
  }
  return 0;
}
