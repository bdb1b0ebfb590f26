#include "agent/safetensors.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace grace {
namespace {

size_t DtypeBytes(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  if (dtype == "F64") return 8;
  return 0;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open the safetensors file");
  std::stringstream ss;
  ss << in.rdbuf();
  return FromBytes(ss.str(), path);
}

StatusOr<SafetensorsFile> SafetensorsFile::FromBytes(std::string bytes, std::string name) {
  SafetensorsFile f;
  f.name_ = std::move(name);
  if (bytes.size() < 8) return DataLoss(f.name_ + ": shorter than the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > bytes.size() - 8) {
    return DataLoss(f.name_ + ": header length " + std::to_string(header_len) +
                    " runs past the end of the file (" + std::to_string(bytes.size()) + " bytes)");
  }
  nlohmann::json header =
      nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return DataLoss(f.name_ + ": the header is not a JSON object");
  }
  f.data_start_ = 8 + header_len;
  const uint64_t data_bytes = bytes.size() - f.data_start_;
  for (auto& [key, value] : header.items()) {
    if (key == "__metadata__") continue;
    const std::string where = f.name_ + ": tensor \"" + key + "\"";
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets") || !value["dtype"].is_string() ||
        !value["shape"].is_array() || !value["data_offsets"].is_array() ||
        value["data_offsets"].size() != 2) {
      return DataLoss(where + ": expected {dtype, shape, data_offsets: [begin, end]}");
    }
    SafetensorInfo info;
    info.dtype = value["dtype"].get<std::string>();
    uint64_t elements = 1;
    for (const auto& d : value["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return DataLoss(where + ": bad shape");
      info.shape.push_back(d.get<int64_t>());
      elements *= static_cast<uint64_t>(info.shape.back());
    }
    if (!value["data_offsets"][0].is_number_unsigned() ||
        !value["data_offsets"][1].is_number_unsigned()) {
      return DataLoss(where + ": data_offsets must be non-negative integers");
    }
    info.begin = value["data_offsets"][0].get<uint64_t>();
    info.end = value["data_offsets"][1].get<uint64_t>();
    if (info.begin > info.end || info.end > data_bytes) {
      return DataLoss(where + ": data_offsets [" + std::to_string(info.begin) + ", " +
                      std::to_string(info.end) + "] outside the " + std::to_string(data_bytes) +
                      "-byte data section");
    }
    const size_t width = DtypeBytes(info.dtype);
    if (width != 0 && info.end - info.begin != elements * width) {
      return DataLoss(where + ": " + std::to_string(info.end - info.begin) + " bytes for shape " +
                      ShapeText(info.shape) + " of " + info.dtype);
    }
    f.tensors_.emplace(key, std::move(info));
  }
  f.bytes_ = std::move(bytes);
  return f;
}

Status SafetensorsFile::ReadFloat32(const std::string& tensor,
                                    const std::vector<int64_t>& expected_shape,
                                    std::vector<float>* out) const {
  auto it = tensors_.find(tensor);
  if (it == tensors_.end()) return NotFound(name_ + ": no tensor \"" + tensor + "\"");
  const SafetensorInfo& info = it->second;
  if (info.shape != expected_shape) {
    return InvalidArgument(name_ + ": tensor \"" + tensor + "\" has shape " +
                           ShapeText(info.shape) + ", the model config needs " +
                           ShapeText(expected_shape));
  }
  const size_t width = DtypeBytes(info.dtype);
  if (width == 0) {
    return InvalidArgument(name_ + ": tensor \"" + tensor + "\" has dtype " + info.dtype +
                           " (supported: F32, F16, BF16, F64)");
  }
  const size_t n = (info.end - info.begin) / width;
  const char* src = bytes_.data() + data_start_ + info.begin;
  out->resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (info.dtype == "F32") {
      std::memcpy(&(*out)[i], src + 4 * i, 4);
    } else if (info.dtype == "F64") {
      double d;
      std::memcpy(&d, src + 8 * i, 8);
      (*out)[i] = static_cast<float>(d);
    } else {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      if (info.dtype == "BF16") {
        const uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(&(*out)[i], &bits, 4);
      } else {
        (*out)[i] = HalfToFloat(h);
      }
    }
  }
  return Status::Ok();
}

Status WriteSafetensors(const std::string& path,
                        const std::map<std::string, Float32Tensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    uint64_t elements = 1;
    for (int64_t d : t.shape) elements *= static_cast<uint64_t>(d);
    header[name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + 4 * elements}}};
    offset += 4 * elements;
  }
  header["__metadata__"] = {{"format", "pt"}, {"writer", "grace"}};
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text += ' ';  // align the data section
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Unavailable(path + ": cannot create the safetensors file");
  uint64_t len = text.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  out.write(len_bytes, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, t] : tensors) {
    uint64_t elements = 1;
    for (int64_t d : t.shape) elements *= static_cast<uint64_t>(d);
    out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(4 * elements));
  }
  out.close();
  if (!out) return Unavailable(path + ": write failed");
  return Status::Ok();
}

}  // namespace grace
