// TorchTensor: a tensor as torch.save stores it (dtype, shape, strides in elements, an offset
// into its storage's raw little-endian bytes), and its elements read out in row-major order.
// TorchSaveFile (core/torch_pickle.h) builds them after checking that every element lies inside
// the storage; the views point into that file's bytes.
//
//   StatusOr<std::vector<int64_t>> ids = tensor.ToInt64();   // [d0][d1]... row-major
//
// Plain value; safe from any thread.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grace {

enum class TorchDtype : uint8_t {
  kBool,
  kUint8,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFloat16,
  kBFloat16,
  kFloat32,
  kFloat64
};
const char* TorchDtypeName(TorchDtype dtype);
int TorchDtypeBytes(TorchDtype dtype);

struct TorchTensor {
  TorchDtype dtype = TorchDtype::kFloat32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  int64_t storage_offset = 0;    // in elements
  std::string_view storage;      // the storage's little-endian bytes

  int64_t numel() const;
  // The elements in row-major order (integer and bool dtypes; floats are an error).
  StatusOr<std::vector<int64_t>> ToInt64() const;
  // The elements in row-major order as doubles (every dtype).
  StatusOr<std::vector<double>> ToDouble() const;
};

}  // namespace grace
