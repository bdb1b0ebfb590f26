#include "core/torch_tensor.h"

#include <bit>
#include <cstring>

namespace grace {

const char* TorchDtypeName(TorchDtype dtype) {
  switch (dtype) {
    case TorchDtype::kBool: return "bool";
    case TorchDtype::kUint8: return "uint8";
    case TorchDtype::kInt8: return "int8";
    case TorchDtype::kInt16: return "int16";
    case TorchDtype::kInt32: return "int32";
    case TorchDtype::kInt64: return "int64";
    case TorchDtype::kFloat16: return "float16";
    case TorchDtype::kBFloat16: return "bfloat16";
    case TorchDtype::kFloat32: return "float32";
    case TorchDtype::kFloat64: return "float64";
  }
  return "?";
}

int TorchDtypeBytes(TorchDtype dtype) {
  switch (dtype) {
    case TorchDtype::kBool:
    case TorchDtype::kUint8:
    case TorchDtype::kInt8: return 1;
    case TorchDtype::kInt16:
    case TorchDtype::kFloat16:
    case TorchDtype::kBFloat16: return 2;
    case TorchDtype::kInt32:
    case TorchDtype::kFloat32: return 4;
    case TorchDtype::kInt64:
    case TorchDtype::kFloat64: return 8;
  }
  return 1;
}

namespace {

bool IsFloat(TorchDtype d) {
  return d == TorchDtype::kFloat16 || d == TorchDtype::kBFloat16 || d == TorchDtype::kFloat32 ||
         d == TorchDtype::kFloat64;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) mant <<= 1, --exp;
      bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

double ElementAsDouble(const char* p, TorchDtype d) {
  switch (d) {
    case TorchDtype::kBool:
    case TorchDtype::kUint8: return static_cast<uint8_t>(*p);
    case TorchDtype::kInt8: return static_cast<int8_t>(*p);
    case TorchDtype::kInt16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case TorchDtype::kInt32: {
      int32_t v = 0;
      std::memcpy(&v, p, 4);
      return v;
    }
    case TorchDtype::kInt64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
    case TorchDtype::kFloat16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return HalfToFloat(v);
    }
    case TorchDtype::kBFloat16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return std::bit_cast<float>(static_cast<uint32_t>(v) << 16);
    }
    case TorchDtype::kFloat32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case TorchDtype::kFloat64: {
      double v;
      std::memcpy(&v, p, 8);
      return v;
    }
  }
  return 0;
}

int64_t ElementAsInt(const char* p, TorchDtype d) {
  if (d == TorchDtype::kInt64) {
    int64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  return static_cast<int64_t>(ElementAsDouble(p, d));
}

// Visits the elements of `t` in row-major order with their byte address. The shape was checked
// against the storage when the tensor was built.
template <typename F>
void ForEachElement(const TorchTensor& t, F&& visit) {
  const int64_t n = t.numel();
  if (n == 0) return;
  const int width = TorchDtypeBytes(t.dtype);
  const size_t dims = t.shape.size();
  std::vector<int64_t> index(dims, 0);
  int64_t offset = t.storage_offset;
  for (int64_t k = 0; k < n; ++k) {
    visit(t.storage.data() + offset * width);
    for (size_t d = dims; d-- > 0;) {
      if (++index[d] < t.shape[d]) {
        offset += t.strides[d];
        break;
      }
      offset -= t.strides[d] * (t.shape[d] - 1);
      index[d] = 0;
    }
  }
}

}  // namespace

int64_t TorchTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

StatusOr<std::vector<int64_t>> TorchTensor::ToInt64() const {
  if (IsFloat(dtype)) {
    return InvalidArgument(std::string("expected an integer tensor, got ") + TorchDtypeName(dtype));
  }
  std::vector<int64_t> out;
  out.reserve(numel());
  ForEachElement(*this, [&](const char* p) { out.push_back(ElementAsInt(p, dtype)); });
  return out;
}

StatusOr<std::vector<double>> TorchTensor::ToDouble() const {
  std::vector<double> out;
  out.reserve(numel());
  ForEachElement(*this, [&](const char* p) { out.push_back(ElementAsDouble(p, dtype)); });
  return out;
}

}  // namespace grace
