#include "core/zip_stored.h"

#include <array>
#include <cstring>

namespace grace {
namespace {

constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr uint32_t kZip64End = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr size_t kEndRecordSize = 22;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kLocalHeaderSize = 30;

uint64_t Le(std::string_view b, uint64_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

}  // namespace

// CRC-32 (IEEE 802.3, reflected).
uint32_t ZipCrc32(std::string_view data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (char ch : data) crc = table[(crc ^ static_cast<uint8_t>(ch)) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

namespace {

std::string At(const std::string& path, uint64_t offset) {
  return path + ": byte offset " + std::to_string(offset) + ": ";
}

// Replaces the 0xFFFFFFFF fields of a central header by the zip64 extra field's values, which
// come in the order uncompressed size, compressed size, local header offset.
Status ApplyZip64Extra(std::string_view extra, const std::string& where, uint64_t* size,
                       uint64_t* compressed, uint64_t* offset) {
  for (size_t at = 0; at + 4 <= extra.size();) {
    const uint64_t id = Le(extra, at, 2);
    const uint64_t len = Le(extra, at + 2, 2);
    if (at + 4 + len > extra.size()) break;
    if (id == 0x0001) {
      size_t p = at + 4;
      for (uint64_t* field : {size, compressed, offset}) {
        if (*field != 0xFFFFFFFFu) continue;
        if (p + 8 > at + 4 + len) return DataLoss(where + "zip64 extra field too short");
        *field = Le(extra, p, 8);
        p += 8;
      }
      return Status::Ok();
    }
    at += 4 + len;
  }
  if (*size == 0xFFFFFFFFu || *compressed == 0xFFFFFFFFu || *offset == 0xFFFFFFFFu) {
    return DataLoss(where + "zip64 sizes announced but no zip64 extra field");
  }
  return Status::Ok();
}

}  // namespace

bool LooksLikeZip(std::string_view bytes) {
  return bytes.size() >= 4 && Le(bytes, 0, 4) == kLocalHeader;
}

const StoredZip::Entry* StoredZip::Find(std::string_view name) const {
  for (const Entry& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

StatusOr<StoredZip> StoredZip::Parse(std::string_view archive, const std::string& path) {
  const uint64_t n = archive.size();
  if (n < kEndRecordSize) return DataLoss(path + ": " + std::to_string(n) + " bytes, not a zip");
  // The end record sits in the last 22 + 65535 (comment) bytes.
  uint64_t end = n - kEndRecordSize;
  const uint64_t lowest = n > kEndRecordSize + 65535 ? n - kEndRecordSize - 65535 : 0;
  while (Le(archive, end, 4) != kEndOfCentralDirectory) {
    if (end == lowest) {
      return DataLoss(path + ": no zip end-of-central-directory record (truncated archive?)");
    }
    --end;
  }
  uint64_t count = Le(archive, end + 10, 2);
  uint64_t dir_size = Le(archive, end + 12, 4);
  uint64_t dir_offset = Le(archive, end + 16, 4);
  if (count == 0xFFFF || dir_size == 0xFFFFFFFFu || dir_offset == 0xFFFFFFFFu) {
    if (end < 20 || Le(archive, end - 20, 4) != kZip64Locator) {
      return DataLoss(At(path, end) + "zip64 end record announced but no locator before it");
    }
    const uint64_t z64 = Le(archive, end - 20 + 8, 8);
    if (z64 > n || n - z64 < 56 || Le(archive, z64, 4) != kZip64End) {
      return DataLoss(At(path, end - 20) + "zip64 end record offset " + std::to_string(z64) +
                      " is not a zip64 end record");
    }
    count = Le(archive, z64 + 32, 8);
    dir_size = Le(archive, z64 + 40, 8);
    dir_offset = Le(archive, z64 + 48, 8);
  }
  if (dir_offset > n || dir_size > n - dir_offset) {
    return DataLoss(At(path, end) + "central directory [" + std::to_string(dir_offset) + ", +" +
                    std::to_string(dir_size) + ") lies outside the " + std::to_string(n) +
                    "-byte file");
  }
  if (count > dir_size / kCentralHeaderSize) {
    return DataLoss(At(path, end) + std::to_string(count) + " entries cannot fit in a " +
                    std::to_string(dir_size) + "-byte central directory");
  }
  StoredZip zip;
  zip.archive_ = archive;
  zip.entries_.reserve(count);
  uint64_t at = dir_offset;
  const uint64_t dir_end = dir_offset + dir_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (dir_end - at < kCentralHeaderSize || Le(archive, at, 4) != kCentralHeader) {
      return DataLoss(At(path, at) + "central directory entry " + std::to_string(i) +
                      " is not a central file header");
    }
    const uint64_t method = Le(archive, at + 10, 2);
    const uint32_t crc = static_cast<uint32_t>(Le(archive, at + 16, 4));
    uint64_t compressed = Le(archive, at + 20, 4);
    uint64_t size = Le(archive, at + 24, 4);
    const uint64_t name_len = Le(archive, at + 28, 2);
    const uint64_t extra_len = Le(archive, at + 30, 2);
    const uint64_t comment_len = Le(archive, at + 32, 2);
    uint64_t local = Le(archive, at + 42, 4);
    if (dir_end - at - kCentralHeaderSize < name_len + extra_len + comment_len) {
      return DataLoss(At(path, at) + "central directory entry " + std::to_string(i) +
                      " runs past the directory");
    }
    Entry e;
    e.name.assign(archive.substr(at + kCentralHeaderSize, name_len));
    const std::string where = At(path, at) + "zip member \"" + e.name + "\": ";
    GRACE_RETURN_IF_ERROR(
        ApplyZip64Extra(archive.substr(at + kCentralHeaderSize + name_len, extra_len), where, &size,
                        &compressed, &local));
    if (method != 0 || compressed != size) {
      return InvalidArgument(where + "compressed (method " + std::to_string(method) +
                             "); only stored members are read, as torch.save writes them");
    }
    if (local > n || n - local < kLocalHeaderSize || Le(archive, local, 4) != kLocalHeader) {
      return DataLoss(where + "local header offset " + std::to_string(local) +
                      " is not a local file header");
    }
    const uint64_t data =
        local + kLocalHeaderSize + Le(archive, local + 26, 2) + Le(archive, local + 28, 2);
    if (data > n || size > n - data) {
      return DataLoss(where + std::to_string(size) + " bytes at offset " + std::to_string(data) +
                      " run past the end of the " + std::to_string(n) + "-byte file");
    }
    e.data_offset = data;
    e.size = size;
    if (ZipCrc32(archive.substr(data, size)) != crc) {
      return DataLoss(where + "CRC-32 mismatch (corrupt archive)");
    }
    zip.entries_.push_back(std::move(e));
    at += kCentralHeaderSize + name_len + extra_len + comment_len;
  }
  return zip;
}

}  // namespace grace
