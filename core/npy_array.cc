#include "core/npy_array.h"

#include <cctype>
#include <cstring>

namespace grace {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

// The value after 'key': in the header's Python dict literal, as text up to its end.
std::string_view HeaderValue(std::string_view header, std::string_view key) {
  const std::string quoted1 = "'" + std::string(key) + "'";
  const std::string quoted2 = "\"" + std::string(key) + "\"";
  size_t at = header.find(quoted1);
  size_t len = quoted1.size();
  if (at == std::string_view::npos) at = header.find(quoted2), len = quoted2.size();
  if (at == std::string_view::npos) return {};
  at = header.find(':', at + len);
  if (at == std::string_view::npos) return {};
  ++at;
  while (at < header.size() && header[at] == ' ') ++at;
  return header.substr(at);
}

}  // namespace

bool LooksLikeNpy(std::string_view bytes) {
  return bytes.substr(0, kMagic.size()) == kMagic;
}

StatusOr<NpyIntArray> ParseNpyIntArray(std::string_view bytes, const std::string& where) {
  if (!LooksLikeNpy(bytes) || bytes.size() < 10) {
    return InvalidArgument(where + ": not a .npy array (no \\x93NUMPY magic)");
  }
  const int major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0, header_at = 0;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return DataLoss(where + ": truncated .npy header");
    for (int i = 3; i >= 0; --i)
      header_len = (header_len << 8) | static_cast<uint8_t>(bytes[8 + i]);
    header_at = 12;
  } else {
    return InvalidArgument(where + ": .npy format version " + std::to_string(major) +
                           " is not one grace reads (1 to 3)");
  }
  if (header_len > bytes.size() - header_at) return DataLoss(where + ": truncated .npy header");
  const std::string_view header = bytes.substr(header_at, header_len);
  const std::string_view data = bytes.substr(header_at + header_len);

  const std::string_view descr_v = HeaderValue(header, "descr");
  if (descr_v.size() < 5 || (descr_v[0] != '\'' && descr_v[0] != '"')) {
    return InvalidArgument(where + ": .npy header has no 'descr'");
  }
  const size_t close = descr_v.find(descr_v[0], 1);
  const std::string_view descr = descr_v.substr(1, close == std::string_view::npos ? 0 : close - 1);
  if (descr.size() != 3 || (descr[1] != 'i' && descr[1] != 'u') ||
      (descr[2] != '1' && descr[2] != '2' && descr[2] != '4' && descr[2] != '8') ||
      (descr[0] != '<' && descr[0] != '|') || (descr[0] == '|' && descr[2] != '1')) {
    return InvalidArgument(where + ": .npy dtype '" + std::string(descr) +
                           "' is not a little-endian integer type");
  }
  const bool is_signed = descr[1] == 'i';
  const int width = descr[2] - '0';
  const bool fortran = HeaderValue(header, "fortran_order").substr(0, 4) == "True";

  std::string_view shape_v = HeaderValue(header, "shape");
  if (shape_v.empty() || shape_v[0] != '(')
    return InvalidArgument(where + ": .npy header has no 'shape'");
  shape_v =
      shape_v.substr(1, shape_v.find(')') == std::string_view::npos ? 0 : shape_v.find(')') - 1);
  NpyIntArray a;
  uint64_t count = 1;
  for (size_t i = 0; i < shape_v.size();) {
    while (i < shape_v.size() && (shape_v[i] == ' ' || shape_v[i] == ',')) ++i;
    if (i == shape_v.size()) break;
    uint64_t dim = 0;
    size_t digits = 0;
    while (i < shape_v.size() && std::isdigit(static_cast<unsigned char>(shape_v[i]))) {
      if (++digits > 15) return InvalidArgument(where + ": .npy shape dimension too large");
      dim = dim * 10 + static_cast<uint64_t>(shape_v[i++] - '0');
    }
    if (digits == 0 || a.shape.size() >= 16) {
      return InvalidArgument(where + ": .npy header 'shape' is not a tuple of integers");
    }
    a.shape.push_back(static_cast<int64_t>(dim));
    if (dim != 0 && count > (data.size() / static_cast<uint64_t>(width)) / dim) {
      return DataLoss(where + ": .npy shape needs more bytes than the " +
                      std::to_string(data.size()) + " that follow the header");
    }
    count *= dim;
  }
  if (count > data.size() / static_cast<uint64_t>(width)) {
    return DataLoss(where + ": .npy shape needs " + std::to_string(count * width) + " bytes, " +
                    std::to_string(data.size()) + " follow the header");
  }
  std::vector<int64_t> raw(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t v = 0;
    for (int b = width - 1; b >= 0; --b) v = (v << 8) | static_cast<uint8_t>(data[i * width + b]);
    if (is_signed && width < 8 && (v >> (8 * width - 1)) & 1) v |= ~uint64_t{0} << (8 * width);
    raw[i] = static_cast<int64_t>(v);
  }
  if (!fortran || a.shape.size() < 2) {
    a.values = std::move(raw);
    return a;
  }
  // Fortran order: the first index varies fastest. Re-lay row-major.
  a.values.resize(count);
  const size_t dims = a.shape.size();
  std::vector<int64_t> index(dims, 0);
  for (uint64_t r = 0; r < count; ++r) {
    uint64_t f = 0;
    for (size_t d = dims; d-- > 0;) f = f * static_cast<uint64_t>(a.shape[d]) + index[d];
    a.values[r] = raw[f];
    for (size_t d = dims; d-- > 0;) {
      if (++index[d] < a.shape[d]) break;
      index[d] = 0;
    }
  }
  return a;
}

StatusOr<std::string> DecodeBase64(std::string_view text, const std::string& where) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::string out;
  out.reserve(text.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const int v = value(text[i]);
    if (v < 0) {
      return InvalidArgument(where + ": not base64 (character " + std::to_string(i) + ")");
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

}  // namespace grace
