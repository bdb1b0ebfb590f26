// ByteWriter / ByteReader: little-endian encoding of the wire protocol's fields.
//
// The reader never reads past its buffer: every Read* fails with a Status naming the field and
// the byte offset, so a truncated or garbled message is an error, not undefined behaviour.
// Plain values; one per message being encoded or decoded.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/status.h"

namespace grace {

class ByteWriter {
 public:
  template <typename T>
  void Put(T value) {
    static_assert(std::is_arithmetic_v<T>);
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &value, sizeof(T));  // hosts here are little-endian
  }
  void PutString(std::string_view s) {
    Put<uint32_t>(static_cast<uint32_t>(s.size()));
    bytes_.append(s);
  }
  template <typename T>
  void PutArray(std::span<const T> values) {
    static_assert(std::is_arithmetic_v<T>);
    Put<uint32_t>(static_cast<uint32_t>(values.size()));
    bytes_.append(reinterpret_cast<const char*>(values.data()), values.size_bytes());
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}

  template <typename T>
  Status Get(const char* field, T* out) {
    static_assert(std::is_arithmetic_v<T>);
    if (bytes_.size() - pos_ < sizeof(T)) return Truncated(field, sizeof(T));
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status GetString(const char* field, std::string* out, uint32_t max_len = 1 << 20) {
    uint32_t n = 0;
    GRACE_RETURN_IF_ERROR(Get(field, &n));
    if (n > max_len) return TooLong(field, n, max_len);
    if (bytes_.size() - pos_ < n) return Truncated(field, n);
    out->assign(bytes_.data() + pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  template <typename T>
  Status GetArray(const char* field, std::vector<T>* out, uint32_t max_count) {
    static_assert(std::is_arithmetic_v<T>);
    uint32_t n = 0;
    GRACE_RETURN_IF_ERROR(Get(field, &n));
    if (n > max_count) return TooLong(field, n, max_count);
    const size_t bytes = static_cast<size_t>(n) * sizeof(T);
    if (bytes_.size() - pos_ < bytes) return Truncated(field, bytes);
    out->resize(n);
    if (bytes > 0) std::memcpy(out->data(), bytes_.data() + pos_, bytes);
    pos_ += bytes;
    return Status::Ok();
  }
  // The next n bytes, as a view into the buffer.
  Status GetView(const char* field, uint32_t n, std::string_view* out) {
    if (bytes_.size() - pos_ < n) return Truncated(field, n);
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  void SkipToEnd() { pos_ = bytes_.size(); }
  // Fails unless every byte was consumed (trailing garbage is an error).
  Status ExpectEnd(const char* what) const {
    if (pos_ == bytes_.size()) return Status::Ok();
    return DataLoss(std::string(what) + ": " + std::to_string(bytes_.size() - pos_) +
                    " unexpected trailing bytes at offset " + std::to_string(pos_));
  }
  size_t position() const { return pos_; }
  size_t size() const { return bytes_.size(); }

 private:
  Status Truncated(const char* field, size_t need) const {
    return DataLoss(std::string("truncated at field '") + field + "' (offset " +
                    std::to_string(pos_) + ", needs " + std::to_string(need) + " bytes, " +
                    std::to_string(bytes_.size() - pos_) + " left)");
  }
  Status TooLong(const char* field, uint32_t n, uint32_t max) const {
    return DataLoss(std::string("field '") + field + "' at offset " + std::to_string(pos_) +
                    " declares " + std::to_string(n) + " elements, limit " + std::to_string(max));
  }

  std::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace grace
