// `gracectl trace info --json` on the real traces reports the README's counts; bad input exits 2.
// Also gracectl's other file arguments checked before any work (bench datapath --json-out).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/testing/real_traces.h"
#include "tests/testing/run_command.h"

namespace {

using grace::testing::CommandRun;

CommandRun Gracectl(const std::string& args) {
  return grace::testing::RunCommand(std::string(GRACECTL_PATH) + " " + args);
}

nlohmann::json Info(const std::string& files) {
  CommandRun r = Gracectl("trace info --json " + files);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  return nlohmann::json::parse(r.out, nullptr, false);
}

TEST(GracectlTraceInfo, ReportsTheReadmeCounts) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string q = dir + "/qwen1.5-moe-a2.7b-gsm8k/";
  nlohmann::json j =
      Info(q + "moe_layer0.jsonl " + q + "moe_layer8.jsonl " + q + "moe_layer12.jsonl");
  EXPECT_EQ(j["format"], "vllm-jsonl");
  EXPECT_EQ(j["layers"], 3);
  EXPECT_EQ(j["experts"], 60);
  EXPECT_EQ(j["top_k"], 4);
  EXPECT_EQ(j["tokens"], 4357);
  EXPECT_EQ(j["dropped_total"], 3 * 8448);
  for (const auto& l : j["per_layer"]) EXPECT_EQ(l["assignments"], 4357 * 4);

  j = Info(dir + "/deepseek-v3-sglang-stats/prefill_in2048.json");
  EXPECT_EQ(j["layers"], 61);
  EXPECT_EQ(j["experts"], 256);
  EXPECT_GT(j["per_layer"][10]["hottest_over_mean"].get<double>(), 2.0);

  j = Info(dir + "/switch-base-128-counts/expert_statistics_3d.json");
  EXPECT_EQ(j["layers"], 6);
  EXPECT_EQ(j["experts"], 128);
  for (const auto& l : j["per_layer"]) EXPECT_EQ(l["assignments"], 206866);

  j = Info(dir + "/mixtral-8x7b-instruct-humaneval-gsm8k/humaneval_2_routing.jsonl");
  EXPECT_EQ(j["tokens"], 333);
  EXPECT_EQ(j["dropped_total"], 5);

  j = Info(dir + "/olmoe-and-mixtral-domain-counts/mistral__expert_counts__c4.json");
  for (const auto& l : j["per_layer"]) EXPECT_EQ(l["assignments"], 417792);

  j = Info(dir +
           "/mixtral-8x7b-mmlu-popularity/mixtral_8x7b_original/"
           "expert_popularity_international_law.json");
  EXPECT_EQ(j["layers"], 32);
  EXPECT_EQ(j["experts"], 8);
}

TEST(GracectlTraceInfo, BadInputExitsTwoNamingTheFileAndLine) {
  const std::string path = ::testing::TempDir() + "/cli_bad.jsonl";
  std::ofstream(path) << "{\"type\": \"meta\", \"top_k\": 2}\n{\"type\": \"route\", \"layer\"\n";
  CommandRun r = Gracectl("trace info " + path);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find(path + ":2: invalid JSON"), std::string::npos) << r.out;
}

TEST(GracectlBenchDatapath, AnUnwritableJsonOutExitsTwoBeforeTheBenchRuns) {
  const std::string path = ::testing::TempDir() + "/no_such_dir/figures.json";
  CommandRun r = Gracectl("bench datapath --json-out " + path);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("--json-out " + path + ": cannot write"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("replay lossless"), std::string::npos) << r.out;  // nothing measured
}

TEST(GracectlTraceInfo, SynthConvertAndInfoWorkTogether) {
  const std::string out = ::testing::TempDir() + "/cli_synth.gtrace";
  CommandRun r =
      Gracectl("trace synth --experts 16 --top-k 2 --layers 3 --steps 4 --phases 2 -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string copy = ::testing::TempDir() + "/cli_copy.gtrace";
  r = Gracectl("trace convert " + out + " -o " + copy);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  nlohmann::json j = Info(copy);
  EXPECT_EQ(j["format"], "native");
  EXPECT_EQ(j["experts"], 16);
  EXPECT_EQ(j["tokens"], 4 * 256);
}

}  // namespace
