// StoredZip: the entries of a zip archive whose members are stored (not compressed), the way
// torch.save writes its files. It reads the central directory (zip64 included), checks that each
// member lies inside the buffer and that its CRC-32 matches, and hands out views into the buffer.
//
//   GRACE_ASSIGN_OR_RETURN(StoredZip zip, StoredZip::Parse(bytes, path));
//   if (const StoredZip::Entry* e = zip.Find("archive/data.pkl")) ... zip.Bytes(*e) ...
//
// A compressed member is an error naming it (torch never compresses). Errors name `path`, the
// byte offset and the field. The views point into the caller's buffer, which must outlive the
// StoredZip. Plain value, no I/O; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grace {

class StoredZip {
 public:
  struct Entry {
    std::string name;
    uint64_t data_offset = 0;  // of the member's bytes in the archive
    uint64_t size = 0;
  };

  static StatusOr<StoredZip> Parse(std::string_view archive, const std::string& path);

  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* Find(std::string_view name) const;
  std::string_view Bytes(const Entry& entry) const {
    return archive_.substr(entry.data_offset, entry.size);
  }

 private:
  std::string_view archive_;
  std::vector<Entry> entries_;
};

// The CRC-32 (IEEE) zip stores for each member.
uint32_t ZipCrc32(std::string_view data);

// True when `bytes` starts like a zip archive (a local file header).
bool LooksLikeZip(std::string_view bytes);

}  // namespace grace
