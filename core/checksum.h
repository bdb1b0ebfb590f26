// Crc32c: the CRC-32C (Castagnoli) checksum that guards each chunk of a native trace file.
// Slicing-by-8 in software (about 2 GB/s on one core), so verifying a chunk costs a few percent
// of reading it. Pure function; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace grace {

// Extends `crc` (0 to start) over n bytes.
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace grace
