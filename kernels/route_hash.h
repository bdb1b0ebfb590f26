// Counter-based hashing shared by the CPU and CUDA kernels, so both draw the same numbers:
// replica choices and generated inputs are a pure function of (seed, indices), independent of
// which rank or device computes them. Device-safe: includes only <cstdint>.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define GRACE_HOST_DEVICE __host__ __device__
#else
#define GRACE_HOST_DEVICE
#endif

namespace grace {

// splitmix64 finaliser: a bijective 64-bit mix.
GRACE_HOST_DEVICE inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

GRACE_HOST_DEVICE inline uint64_t HashCombine(uint64_t seed, uint64_t value) {
  return Mix64(seed ^ (value + 0x632be59bd9b4e019ull + (seed << 6) + (seed >> 2)));
}

// Uniform in [0, 1) from the top 24 bits (exactly representable as float).
GRACE_HOST_DEVICE inline float HashToUnit(uint64_t h) {
  return static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
}

// The uniform that picks the replica of a token's k-th expert at one layer and step.
GRACE_HOST_DEVICE inline float RouteUniform(uint64_t seed, uint64_t step, int layer_index,
                                            int64_t token, int k) {
  uint64_t h = HashCombine(seed, step);
  h = HashCombine(h, static_cast<uint64_t>(token) * 64u + static_cast<uint64_t>(k));
  h = HashCombine(h, static_cast<uint64_t>(layer_index));
  return HashToUnit(h);
}

}  // namespace grace
