// The serving stacks' own dumps, as their tools write them (tests/fixtures/make_*.py): SGLang's
// expert distribution recorder in each mode, vLLM's routed experts in each form a user saves.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/trace_file.h"
#include "core/trace_import.h"
#include "tests/testing/import_errors.h"
#include "tests/testing/run_command.h"

namespace grace {
namespace {

std::string Fixture(const std::string& name) {
  return std::string(GRACE_FIXTURES_DIR) + "/" + name;
}

Trace Import(const std::vector<std::string>& names) {
  std::vector<std::string> paths;
  for (const std::string& n : names) paths.push_back(Fixture(n));
  StatusOr<Trace> t = ImportTraces(paths);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(*t) : Trace{};
}

std::vector<double> CountRow(const Trace& t, size_t step, int layer_index) {
  const auto& c = t.steps[step].counts.counts;
  const int e = t.info.num_experts;
  return std::vector<double>(c.begin() + layer_index * e, c.begin() + (layer_index + 1) * e);
}

std::vector<int> Ids(const Trace& t, size_t step, int layer_index, int token) {
  const TokenBatch& b = t.steps[step].tokens;
  const size_t at = (static_cast<size_t>(layer_index) * b.num_tokens + token) * t.info.top_k;
  return std::vector<int>(b.expert_ids.begin() + at, b.expert_ids.begin() + at + t.info.top_k);
}

std::string Dropped(const Trace& t) {
  std::string s;
  for (const auto& d : t.dropped) s += std::to_string(d.count) + ": " + d.reason + "\n";
  return s;
}

TEST(SglangRecorderDump, StatModeDropsTheUnusedBufferRowsAndSaysSo) {
  for (const char* name : {"sglang_stat.pt", "sglang_stat_approx.pt"}) {
    const Trace t = Import({name});
    EXPECT_EQ(t.info.format, "sglang-pt");
    EXPECT_EQ(t.info.kind, TraceKind::kCounts);
    EXPECT_EQ(t.info.num_experts, 8);
    EXPECT_EQ(t.info.layer_ids, (std::vector<LayerId>{0, 1, 2, 3}));
    ASSERT_EQ(t.steps.size(), 3u) << name;  // 4 buffer rows, the last never written
    ASSERT_EQ(t.dropped.size(), 1u);
    EXPECT_EQ(t.dropped[0].count, 1);
    EXPECT_NE(t.dropped[0].reason.find("1 of 4 buffer rows"), std::string::npos) << Dropped(t);
    // counts[step][layer][e] = (step + 1) * (e + 1) + layer; layer 0 is dense.
    EXPECT_EQ(CountRow(t, 0, 0), std::vector<double>(8, 0.0));
    EXPECT_EQ(CountRow(t, 2, 3), (std::vector<double>{6, 9, 12, 15, 18, 21, 24, 27}));
  }
  const Trace approx = Import({"sglang_stat_approx.pt"});
  bool utilization = false;
  for (const auto& n : approx.notes)
    utilization |= n.find("average utilization 0.875") != std::string::npos;
  EXPECT_TRUE(utilization);
}

TEST(SglangRecorderDump, GpuLocatedStoragesReadTheSame) {
  const Trace cpu = Import({"sglang_stat.pt"});
  const Trace gpu = Import({"sglang_stat_cuda.pt"});
  ASSERT_EQ(gpu.steps.size(), cpu.steps.size());
  for (size_t s = 0; s < cpu.steps.size(); ++s) {
    EXPECT_EQ(gpu.steps[s].counts.counts, cpu.steps[s].counts.counts);
  }
}

TEST(SglangRecorderDump, PerPassModeMapsSlotsToExpertsAndDropsIdlePasses) {
  const Trace t = Import({"sglang_per_pass.pt"});
  EXPECT_EQ(t.info.kind, TraceKind::kCounts);
  EXPECT_EQ(t.info.num_experts, 8);  // 10 physical slots, 2 of them replicas
  ASSERT_EQ(t.steps.size(), 2u);
  ASSERT_EQ(t.dropped.size(), 1u) << Dropped(t);
  EXPECT_NE(t.dropped[0].reason.find("1 of 3 records route no token"), std::string::npos);
  // Pass 0, layer 1: 5 tokens on slots {1..5} and {4..8}; slot 8 holds expert 3.
  EXPECT_EQ(CountRow(t, 0, 1), (std::vector<double>{0, 1, 1, 2, 2, 2, 1, 1}));
  EXPECT_EQ(CountRow(t, 0, 0), std::vector<double>(8, 0.0));
}

TEST(SglangRecorderDump, PerTokenModeGivesTokenLevelRoutingOfTheMoeLayers) {
  const Trace t = Import({"sglang_per_token.pt"});
  EXPECT_EQ(t.info.kind, TraceKind::kTokens);
  EXPECT_EQ(t.info.top_k, 2);  // the recorder's 8 columns, 6 of them -1
  EXPECT_EQ(t.info.num_experts, 8);
  EXPECT_EQ(t.info.layer_ids, (std::vector<LayerId>{1, 2, 3}));  // layer 0 dense, left out
  ASSERT_EQ(t.steps.size(), 2u);
  EXPECT_EQ(t.steps[0].tokens.num_tokens, 6);
  EXPECT_EQ(t.steps[1].tokens.num_tokens, 2);
  EXPECT_EQ(Ids(t, 0, 0, 0), (std::vector<int>{1, 4}));
  EXPECT_EQ(Ids(t, 0, 0, 4), (std::vector<int>{5, 3}));  // slot 8 -> expert 3
  EXPECT_EQ(Ids(t, 0, 0, 5), (std::vector<int>{6, 5}));  // slot 9 -> expert 5
  EXPECT_EQ(Ids(t, 0, 2, 4), (std::vector<int>{7, 0}));
  EXPECT_EQ(Ids(t, 1, 0, 1), (std::vector<int>{3, 6}));  // pass 1: a = t + layer + 1
}

TEST(SglangRecorderDump, MapWithMoreExpertsThanSlotsIsRefused) {
  StatusOr<Trace> t = ImportTraces({Fixture("torch_hostile_map.pt")});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(
                "field \"last_physical_to_logical_map\": expert 60000 in a map of 1 slots"),
            std::string::npos)
      << t.status().ToString();
}

TEST(SglangRecorderDump, RanksFilesFollowOneAnother) {
  const Trace t = Import({"sglang_per_pass.pt", "sglang_per_pass.pt"});
  EXPECT_EQ(t.steps.size(), 4u);
  EXPECT_EQ(t.dropped.size(), 2u);
}

TEST(VllmRoutedExperts, NpyOfOneRequest) {
  const Trace t = Import({"vllm_routed_experts.npy"});
  EXPECT_EQ(t.info.format, "vllm-routed-experts-npy");
  EXPECT_EQ(t.info.top_k, 2);
  EXPECT_EQ(t.info.layer_ids, (std::vector<LayerId>{1, 2}));  // layer 0: zeros (dense)
  ASSERT_EQ(t.steps.size(), 1u);
  EXPECT_EQ(t.steps[0].tokens.num_tokens, 5);
  EXPECT_EQ(Ids(t, 0, 0, 0), (std::vector<int>{1, 3}));
  EXPECT_EQ(Ids(t, 0, 1, 4), (std::vector<int>{6, 1}));
}

TEST(VllmRoutedExperts, SavedApiResponsesOneStepPerRequest) {
  const Trace t = Import({"vllm_responses.jsonl"});
  EXPECT_EQ(t.info.format, "vllm-routed-experts");
  EXPECT_EQ(t.info.model, "tiny-moe");
  EXPECT_EQ(t.info.layer_ids, (std::vector<LayerId>{1, 2}));
  ASSERT_EQ(t.steps.size(), 2u);
  EXPECT_EQ(t.steps[0].tokens.num_tokens, 6);
  // Split form: 4 prompt rows from the response, then the choice's 2 rows.
  EXPECT_EQ(t.steps[1].tokens.num_tokens, 6);
  EXPECT_EQ(Ids(t, 1, 0, 0), (std::vector<int>{4, 6}));
  EXPECT_EQ(Ids(t, 1, 0, 4), (std::vector<int>{3, 5}));
}

using testing::ImportError;
using testing::WriteTestFile;

TEST(VllmRoutedExperts, OnePrettyPrintedResponse) {
  StatusOr<std::string> lines = ReadWholeFile(Fixture("vllm_responses.jsonl"));
  ASSERT_TRUE(lines.ok());
  const nlohmann::json first = nlohmann::json::parse(lines->substr(0, lines->find('\n')));
  const std::string path = ::testing::TempDir() + "/response.json";
  std::ofstream(path) << first.dump(2) << "\n";
  StatusOr<Trace> t = ImportTraces({path});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->info.format, "vllm-routed-experts");
  ASSERT_EQ(t->steps.size(), 1u);
  EXPECT_EQ(t->steps[0].tokens.num_tokens, 6);
}

TEST(VllmRoutedExperts, BadResponsesAreNamedWithLineAndField) {
  std::string e =
      ImportError(WriteTestFile("bad_b64.jsonl", R"({"choices": [{"routed_experts": "k05V!!"}]})"));
  EXPECT_NE(e.find("bad_b64.jsonl:1: field \"choices[0].routed_experts\": not base64"),
            std::string::npos)
      << e;
  e = ImportError(WriteTestFile("two_d.jsonl", R"({"routed_experts": [[1, 2], [3, 4]]})"));
  EXPECT_NE(e.find("two_d.jsonl:1"), std::string::npos) << e;
  e = ImportError(WriteTestFile("none.jsonl",
                                R"({"choices": [{"routed_experts": [[[1, 2]]]}]})"
                                "\n"
                                R"({"choices": [{"text": "x"}], "prompt_routed_experts": null})"));
  EXPECT_NE(e.find("none.jsonl:2: no routed_experts"), std::string::npos) << e;
  // A header announcing 100000 x 61 x 8 int32 ids over 4 bytes of data: refused, not allocated.
  const std::string header =
      "{'descr': '<i4', 'fortran_order': False, 'shape': (100000, 61, 8), }\n";
  e = ImportError(WriteTestFile("short.npy", std::string("\x93NUMPY\x01\x00", 8) +
                                                 static_cast<char>(header.size()) + '\0' + header +
                                                 "abcd"));
  EXPECT_NE(e.find("short.npy: .npy shape needs"), std::string::npos) << e;
}

TEST(StackDumps, GracectlTraceInfoReadsThem) {
  grace::testing::CommandRun r = grace::testing::RunCommand(
      std::string(GRACECTL_PATH) + " trace info --json " + Fixture("sglang_stat.pt"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out.substr(r.out.find('{')), nullptr, false);
  EXPECT_EQ(j["format"], "sglang-pt");
  EXPECT_EQ(j["layers"], 4);
  EXPECT_EQ(j["experts"], 8);
}

}  // namespace
}  // namespace grace
