// bfloat16 on the host: the storage type of the CUDA backend's weights and activations (the top
// 16 bits of an IEEE float32), held as raw bits in uint16_t so host code needs no CUDA header.
//
//   uint16_t b = FloatToBf16(x);   // round to nearest, ties to even; NaN stays NaN
//   float y = Bf16ToFloat(b);      // exact
//   FloatsToBf16(in, n, out);      // arrays, same rounding
//
// Pure functions; any thread.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace grace {

inline uint16_t FloatToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // NaN: keep sign, force quiet
  }
  // Adding 0x7fff plus the kept lowest bit rounds to nearest with ties to even; a carry out of
  // the mantissa rounds up the exponent, which is the correct result (up to infinity).
  const uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

inline float Bf16ToFloat(uint16_t value) {
  return std::bit_cast<float>(static_cast<uint32_t>(value) << 16);
}

inline void FloatsToBf16(const float* in, size_t n, uint16_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = FloatToBf16(in[i]);
}

inline void Bf16ToFloats(const uint16_t* in, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(in[i]);
}

}  // namespace grace
