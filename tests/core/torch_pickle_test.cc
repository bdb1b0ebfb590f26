// The torch.save reader on files written by PyTorch itself (tests/fixtures/make_sglang_pt.py),
// and on those files cut short, corrupted and rewritten to be hostile: every one is a Status,
// never a crash.
#include "core/torch_pickle.h"

#include <gtest/gtest.h>

#include "core/trace_file.h"
#include "core/zip_stored.h"

namespace grace {
namespace {

std::string Fixture(const std::string& name) {
  StatusOr<std::string> bytes = ReadWholeFile(std::string(GRACE_FIXTURES_DIR) + "/" + name);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return bytes.ok() ? *bytes : "";
}

TEST(TorchPickle, ReadsPlainDataAndTensorsAsPyTorchWroteThem) {
  StatusOr<TorchSaveFile> f = TorchSaveFile::Parse(Fixture("torch_misc.pt"), "torch_misc.pt");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->archive_name(), "torch_misc");
  const TorchSaveFile::Value root = f->root();
  ASSERT_TRUE(root.is_dict());
  EXPECT_EQ(root.Keys(),
            (std::vector<std::string>{"t", "big", "flags", "nested", "neg", "half", "bf16"}));

  // arange(6).reshape(2, 3).t(): a transposed view, strides (1, 3) over the same storage.
  const TorchTensor& t = root.Find("t")->AsTensor();
  EXPECT_EQ(t.dtype, TorchDtype::kFloat32);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(t.strides, (std::vector<int64_t>{1, 3}));
  StatusOr<std::vector<double>> values = t.ToDouble();
  ASSERT_TRUE(values.ok());
  EXPECT_EQ(*values, (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_FALSE(t.ToInt64().ok());  // floats are not integers

  StatusOr<std::vector<int64_t>> big = root.Find("big")->AsTensor().ToInt64();
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(*big, (std::vector<int64_t>{int64_t{1} << 40, -3}));
  StatusOr<std::vector<int64_t>> flags = root.Find("flags")->AsTensor().ToInt64();
  ASSERT_TRUE(flags.ok());
  EXPECT_EQ(*flags, (std::vector<int64_t>{1, 0}));

  const TorchSaveFile::Value nested = *root.Find("nested");
  ASSERT_TRUE(nested.is_sequence());
  ASSERT_EQ(nested.size(), 3u);
  EXPECT_EQ(nested.at(0).AsInt(), 1);
  EXPECT_EQ(nested.at(1).kind(), TorchSaveFile::Kind::kTuple);
  EXPECT_DOUBLE_EQ(nested.at(1).at(0).AsDouble(), 2.5);
  EXPECT_EQ(nested.at(1).at(1).AsString(), "x");
  EXPECT_TRUE(nested.at(2).Find("k")->is_none());
  EXPECT_EQ(root.Find("neg")->AsInt(), -70000);

  // Half precision, a subnormal included, and bfloat16.
  StatusOr<std::vector<double>> half = root.Find("half")->AsTensor().ToDouble();
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(*half, (std::vector<double>{1.5, -2.0, 1.0 / 32768}));
  StatusOr<std::vector<double>> bf16 = root.Find("bf16")->AsTensor().ToDouble();
  ASSERT_TRUE(bf16.ok());
  EXPECT_EQ(*bf16, (std::vector<double>{1.5, -2.0}));
}

TEST(TorchPickle, OlderPyTorchArchiveFolderIsRead) {
  StatusOr<TorchSaveFile> f =
      TorchSaveFile::Parse(Fixture("sglang_stat_approx.pt"), "sglang_stat_approx.pt");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->archive_name(), "archive");
}

TEST(TorchPickle, NotATorchFileIsNamed) {
  StatusOr<TorchSaveFile> f = TorchSaveFile::Parse("{\"a\": 1}", "x.pt");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("x.pt"), std::string::npos);
  // Legacy (pre-1.6) format: a bare pickle starting with torch's magic number.
  f = TorchSaveFile::Parse(std::string("\x80\x02\x8a\x0a", 4) + std::string(20, 'x'), "old.pt");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("legacy"), std::string::npos) << f.status().ToString();
}

// Replaces every occurrence of the 4 CRC bytes of `member` (local and central header), so a
// change to the member passes the CRC check and reaches the pickle machine.
void FixCrc(std::string* archive, const std::string& old_member, const std::string& new_member) {
  auto bytes = [](uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(v >> (8 * i));
    return s;
  };
  const std::string from = bytes(ZipCrc32(old_member)), to = bytes(ZipCrc32(new_member));
  for (size_t at = archive->find(from); at != std::string::npos; at = archive->find(from, at + 4))
    archive->replace(at, 4, to);
}

TEST(TorchPickle, CorruptedArchivesAreErrorsNeverCrashes) {
  const std::string good = Fixture("sglang_per_token.pt");
  ASSERT_FALSE(good.empty());
  // Cut short at every length.
  for (size_t n = 0; n < good.size(); ++n) {
    StatusOr<TorchSaveFile> f = TorchSaveFile::Parse(good.substr(0, n), "cut.pt");
    EXPECT_FALSE(f.ok()) << "cut at " << n;
  }
  // Every byte flipped: the archive structure or a CRC catches most; none may crash.
  int parsed = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5A);
    parsed += TorchSaveFile::Parse(std::move(bad), "flip.pt").ok();
  }
  EXPECT_LT(parsed, static_cast<int>(good.size()));
}

TEST(TorchPickle, CorruptedPicklesAreErrorsNeverCrashes) {
  const std::string good = Fixture("sglang_per_token.pt");
  StatusOr<StoredZip> zip = StoredZip::Parse(good, "f");
  ASSERT_TRUE(zip.ok());
  const StoredZip::Entry* pkl = zip->Find("sglang_per_token/data.pkl");
  ASSERT_NE(pkl, nullptr);
  const std::string pickle(zip->Bytes(*pkl));
  int failed = 0;
  for (size_t i = 0; i < pickle.size(); ++i) {
    for (uint8_t x : {0x01, 0x80, 0xFF}) {
      std::string bad_pickle = pickle;
      bad_pickle[i] = static_cast<char>(bad_pickle[i] ^ x);
      std::string archive = good;
      archive.replace(pkl->data_offset, pkl->size, bad_pickle);
      FixCrc(&archive, pickle, bad_pickle);
      StatusOr<TorchSaveFile> f = TorchSaveFile::Parse(std::move(archive), "flip.pt");
      failed += !f.ok();
      if (!f.ok()) {
        EXPECT_NE(f.status().message().find("flip.pt"), std::string::npos);
      }
    }
  }
  EXPECT_GT(failed, 0);
}

TEST(TorchPickle, CallsOutsideTheSubsetAreRefusedByName) {
  // A pickle that would run os.system("true") under Python's pickle: GLOBAL, args, REDUCE.
  const std::string evil = Fixture("torch_evil.pt");
  StatusOr<TorchSaveFile> f = TorchSaveFile::Parse(evil, "evil.pt");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("system"), std::string::npos) << f.status().ToString();
}

TEST(TorchPickle, StorageSmallerThanAnnouncedIsRefusedBeforeAllocating) {
  StatusOr<TorchSaveFile> f = TorchSaveFile::Parse(Fixture("torch_short_storage.pt"), "s.pt");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("1000000000 int32 elements announced"), std::string::npos)
      << f.status().ToString();
}

TEST(TorchPickle, CompressedMemberIsNamed) {
  StatusOr<TorchSaveFile> f = TorchSaveFile::Parse(Fixture("torch_deflated.pt"), "d.pt");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("compressed"), std::string::npos) << f.status().ToString();
}

}  // namespace
}  // namespace grace
