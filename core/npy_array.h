// NpyIntArray: an integer array in NumPy's .npy format (np.save), as vLLM returns routed experts
// (base64 of the .npy bytes in its API responses, or a file a user np.save()d). Versions 1-3 of
// the format, little-endian or single-byte integer dtypes, C or Fortran order.
//
//   GRACE_ASSIGN_OR_RETURN(NpyIntArray a, ParseNpyIntArray(bytes, "routed.npy"));
//   // a.shape == {tokens, layers, k}; a.values row-major
//
// The header's shape is checked against the bytes that follow before anything is allocated.
// Errors name `where` and what is wrong. Pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grace {

struct NpyIntArray {
  std::vector<int64_t> shape;
  std::vector<int64_t> values;  // row-major
};

bool LooksLikeNpy(std::string_view bytes);

StatusOr<NpyIntArray> ParseNpyIntArray(std::string_view bytes, const std::string& where);

// Standard base64 (RFC 4648, '=' padding optional; whitespace is an error).
StatusOr<std::string> DecodeBase64(std::string_view text, const std::string& where);

}  // namespace grace
