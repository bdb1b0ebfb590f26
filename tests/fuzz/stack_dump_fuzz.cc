// libFuzzer target: the readers of the serving stacks' dumps (SGLang's torch.save .pt files,
// vLLM's .npy routed experts) on arbitrary bytes must return errors, never crash, hang or read
// out of bounds. The first byte picks the input's role:
//   0: the whole file, as a .pt archive;
//   1: the pickle only, wrapped in a valid stored zip with storages data/0..7 of 4 KiB each, so
//      mutations reach the pickle machine past the archive's CRC checks;
//   2: the whole file, as a .npy array.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/import_formats.h"
#include "core/zip_stored.h"

namespace {

void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

// A stored zip of `members` (name, bytes), as torch.save lays it out.
std::string StoredZipOf(const std::vector<std::pair<std::string, std::string>>& members) {
  std::string zip, central;
  for (const auto& [name, data] : members) {
    const uint64_t local = zip.size();
    const uint32_t crc = grace::ZipCrc32(data);
    PutLe(&zip, 0x04034b50, 4);
    PutLe(&zip, 20, 2);  // version
    PutLe(&zip, 0, 2);   // flags
    PutLe(&zip, 0, 2);   // stored
    PutLe(&zip, 0, 4);   // time, date
    PutLe(&zip, crc, 4);
    PutLe(&zip, data.size(), 4);
    PutLe(&zip, data.size(), 4);
    PutLe(&zip, name.size(), 2);
    PutLe(&zip, 0, 2);
    zip += name + data;
    PutLe(&central, 0x02014b50, 4);
    PutLe(&central, 20, 2);
    PutLe(&central, 20, 2);
    PutLe(&central, 0, 2);
    PutLe(&central, 0, 2);
    PutLe(&central, 0, 4);
    PutLe(&central, crc, 4);
    PutLe(&central, data.size(), 4);
    PutLe(&central, data.size(), 4);
    PutLe(&central, name.size(), 2);
    PutLe(&central, 0, 2);
    PutLe(&central, 0, 2);
    PutLe(&central, 0, 2);
    PutLe(&central, 0, 2);
    PutLe(&central, 0, 4);
    PutLe(&central, local, 4);
    central += name;
  }
  const uint64_t dir = zip.size();
  zip += central;
  PutLe(&zip, 0x06054b50, 4);
  PutLe(&zip, 0, 4);
  PutLe(&zip, members.size(), 2);
  PutLe(&zip, members.size(), 2);
  PutLe(&zip, central.size(), 4);
  PutLe(&zip, dir, 4);
  PutLe(&zip, 0, 2);
  return zip;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: (void)grace::ImportSglangRecorderDump(rest, "fuzz.pt"); break;
    case 1: {
      std::vector<std::pair<std::string, std::string>> members = {{"fuzz/data.pkl", rest}};
      for (int k = 0; k < 8; ++k) {
        std::string storage(4096, '\0');
        for (size_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<char>(i * 7 + k);
        members.emplace_back("fuzz/data/" + std::to_string(k), storage);
      }
      (void)grace::ImportSglangRecorderDump(StoredZipOf(members), "fuzz.pt");
      break;
    }
    default: (void)grace::ImportVllmRoutedExpertsNpy(rest, "fuzz.npy", {}); break;
  }
  return 0;
}
