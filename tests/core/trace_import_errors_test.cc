// Bad input to the importers: every error names the file, the line (or position) and the problem.
#include <gtest/gtest.h>

#include <fstream>

#include "core/trace_import.h"
#include "tests/testing/import_errors.h"

namespace grace {
namespace {

using testing::ImportError;
using testing::WriteTestFile;

const char* kMeta =
    R"({"type": "meta", "model_id": "Qwen/Qwen1.5-MoE-A2.7B-Chat", "layers_logged": [3], "top_k": 2})";

std::string Route(int token, int a, int b) {
  return R"({"type": "route", "req_id": "r1", "token_idx": )" + std::to_string(token) +
         R"(, "layer": 3, "topk_ids": [)" + std::to_string(a) + ", " + std::to_string(b) +
         R"(], "topk_weights": [0.6, 0.4]})";
}

TEST(ImportErrors, GarbledJsonlLineIsNamed) {
  const std::string text = std::string(kMeta) + "\n" + Route(0, 1, 2) + "\n" +
                           R"({"type": "route", "token_idx": 1, "layer": 3, "topk_ids": [1,)" +
                           "\n" + Route(2, 1, 2) + "\n";
  const std::string path = WriteTestFile("garbled.jsonl", text);
  const std::string e = ImportError(path);
  EXPECT_NE(e.find(path + ":3: invalid JSON"), std::string::npos) << e;
}

TEST(ImportErrors, TruncatedJsonlLastLineIsNamed) {
  std::string text = std::string(kMeta) + "\n" + Route(0, 1, 2) + "\n" + Route(1, 3, 4);
  text.resize(text.size() - 10);
  const std::string path = WriteTestFile("truncated.jsonl", text);
  const std::string e = ImportError(path);
  EXPECT_NE(e.find(path + ":3: invalid JSON"), std::string::npos) << e;
}

TEST(ImportErrors, WrongTopKAndOutOfRangeIdsAreNamedWithTheField) {
  const std::string path =
      WriteTestFile("wrongk.jsonl",
                    std::string(kMeta) + "\n" + Route(0, 1, 2) + "\n" +
                        R"({"type": "route", "token_idx": 1, "layer": 3, "topk_ids": [1, 2, 3]})");
  const std::string e = ImportError(path);
  EXPECT_NE(e.find(path + ":3: field \"topk_ids\": expected 2 ids"), std::string::npos) << e;
  // Qwen1.5-MoE has 60 experts: id 60 does not exist.
  const std::string p2 =
      WriteTestFile("range.jsonl", std::string(kMeta) + "\n" + Route(0, 1, 60) + "\n");
  EXPECT_NE(ImportError(p2).find("expert id 60 is out of range for 60 experts"), std::string::npos);
}

TEST(ImportErrors, TruncatedJsonDocumentNamesLineAndColumn) {
  const std::string path = WriteTestFile("cut.json", "{\"logical_count\": [[1.0, 2.0],\n [3.0, 4");
  const std::string e = ImportError(path);
  EXPECT_NE(e.find(path + ": invalid JSON at line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(ImportErrors, MismatchedShapesAreNamed) {
  const std::string p = WriteTestFile("ragged.json", R"({"logical_count": [[1, 2, 3], [4, 5]]})");
  EXPECT_NE(ImportError(p).find("field \"logical_count[1]\": expected 3 experts, got 2"),
            std::string::npos);
  const std::string q = WriteTestFile(
      "counts.json",
      R"({"model": "olmoe", "kind": "expert_counts", "layers": [0, 7], "num_experts": 2, "counts": {"0": [1, 2], "7": [1, -3]}})");
  EXPECT_NE(ImportError(q).find("field \"counts.7\": expected non-negative numbers"),
            std::string::npos)
      << ImportError(q);
  const std::string r = WriteTestFile("unknown.json", R"({"hello": 1})");
  EXPECT_NE(ImportError(r).find("not a trace format grace knows (top-level keys: hello)"),
            std::string::npos);
  EXPECT_NE(ImportError(WriteTestFile("empty.json", "")).find("empty file"), std::string::npos);
  EXPECT_NE(ImportError(::testing::TempDir() + "/missing.json").find("cannot open"),
            std::string::npos);
}

TEST(ImportErrors, ProfilingRunIsDroppedOnlyWhenLongEnough) {
  std::string text = std::string(kMeta) + "\n";
  for (int i = 0; i < 100; ++i) text += Route(i, 5, 6) + "\n";  // the profiling pass
  for (int i = 0; i < 10; ++i) text += Route(i, i % 7, 7 + i % 3) + "\n";
  StatusOr<Trace> t = ImportTraces({WriteTestFile("prof.jsonl", text)});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->TotalTokens(), 10);
  ASSERT_EQ(t->dropped.size(), 1u);
  EXPECT_EQ(t->dropped[0].count, 100);
  ImportOptions keep;
  keep.min_profiling_run = 0;
  StatusOr<Trace> kept = ImportTraces({WriteTestFile("prof.jsonl", text)}, keep);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->TotalTokens(), 110);
}

}  // namespace
}  // namespace grace
