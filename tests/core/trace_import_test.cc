// The importers against every real trace of ../shared/traces/real: the counts its README gives.
#include "core/trace_import.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/trace_summary.h"
#include "tests/testing/real_traces.h"

namespace grace {
namespace {

Trace MustImport(const std::vector<std::string>& paths) {
  StatusOr<Trace> t = ImportTraces(paths);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : Trace{};
}

std::vector<std::string> FilesIn(const std::string& dir, const std::string& contains) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(contains) != std::string::npos) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(ImportTraces, QwenVllmLayersJoinIntoOneThreeLayerTrace) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string q = dir + "/qwen1.5-moe-a2.7b-gsm8k/";
  for (const char* layer : {"0", "8", "12"}) {
    Trace t = MustImport({q + "moe_layer" + layer + ".jsonl"});
    EXPECT_EQ(t.info.format, "vllm-jsonl");
    EXPECT_EQ(t.TotalTokens(), 4357);
    EXPECT_EQ(t.info.num_experts, 60);
    EXPECT_EQ(t.info.top_k, 4);
    ASSERT_EQ(t.dropped.size(), 1u);
    EXPECT_EQ(t.dropped[0].count, 8448);
    EXPECT_NE(t.dropped[0].reason.find("profiling"), std::string::npos);
  }
  Trace t = MustImport({q + "moe_layer0.jsonl", q + "moe_layer8.jsonl", q + "moe_layer12.jsonl"});
  EXPECT_EQ(t.info.layer_ids, (std::vector<LayerId>{0, 8, 12}));
  EXPECT_EQ(t.info.model, "Qwen/Qwen1.5-MoE-A2.7B-Chat");
  EXPECT_EQ(t.TotalTokens(), 4357);
  EXPECT_EQ(t.dropped.size(), 3u);
  const TraceSummary s = SummarizeTrace(t);
  for (const LayerSummary& l : s.layers) {
    EXPECT_EQ(l.assignments, 4357 * 4);
    EXPECT_GT(l.hottest_over_mean, 1.2);  // README: about 1.4x
    EXPECT_LT(l.hottest_over_mean, 2.0);
  }
  // Joining keeps each file's tokens: layer 8 of the join is the layer-8 file.
  Trace l8 = MustImport({q + "moe_layer8.jsonl"});
  ASSERT_EQ(l8.steps.size(), t.steps.size());
  for (size_t s = 0; s < t.steps.size(); ++s) {
    const size_t per_layer = static_cast<size_t>(t.steps[s].tokens.num_tokens) * 4;
    std::vector<ExpertId> joined(t.steps[s].tokens.expert_ids.begin() + per_layer,
                                 t.steps[s].tokens.expert_ids.begin() + 2 * per_layer);
    ASSERT_EQ(joined, l8.steps[s].tokens.expert_ids);
    EXPECT_TRUE(t.steps[s].tokens.home_rank.empty());
  }
}

TEST(ImportTraces, MixtralRoutingJsonlKeepsCompleteTokensAndReportsTheRest) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string m = dir + "/mixtral-8x7b-instruct-humaneval-gsm8k/";
  struct Case {
    const char* file;
    int tokens, complete;
  };
  for (const Case& c :
       {Case{"humaneval_2_routing.jsonl", 338, 333}, Case{"gsm8k_2_routing.jsonl", 247, 244}}) {
    Trace t = MustImport({m + c.file});
    EXPECT_EQ(t.info.format, "routing-jsonl");
    EXPECT_EQ(t.info.num_layers(), 32);
    EXPECT_EQ(t.info.num_experts, 8);
    EXPECT_EQ(t.info.top_k, 2);
    EXPECT_EQ(t.TotalTokens(), c.complete);
    ASSERT_EQ(t.dropped.size(), 1u);
    EXPECT_EQ(t.dropped[0].count, c.tokens - c.complete);
    EXPECT_NE(t.dropped[0].reason.find("lack some of the 32 layers"), std::string::npos);
    EXPECT_FALSE(t.steps[0].tokens.gate_weights.empty());
  }
  Trace both = MustImport({m + "humaneval_2_routing.jsonl", m + "gsm8k_2_routing.jsonl"});
  EXPECT_EQ(both.TotalTokens(), 333 + 244);
  EXPECT_EQ(both.info.domain, "humaneval,gsm8k");
}

TEST(ImportTraces, DeepSeekLogicalCountIs61By256WithDenseLayersNoted) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const auto files = FilesIn(dir + "/deepseek-v3-sglang-stats", "prefill_");
  ASSERT_EQ(files.size(), 8u);
  bool uneven_noted = false;
  for (const std::string& f : files) {
    Trace t = MustImport({f});
    EXPECT_EQ(t.info.format, "sglang-logical-count");
    EXPECT_EQ(t.info.kind, TraceKind::kCounts);
    EXPECT_EQ(t.info.num_layers(), 61);
    EXPECT_EQ(t.info.num_experts, 256);
    const TraceSummary s = SummarizeTrace(t);
    EXPECT_EQ(s.layers[0].assignments + s.layers[1].assignments + s.layers[2].assignments, 0);
    EXPECT_GT(s.assignments, 3.5e9);
    ASSERT_FALSE(t.notes.empty());
    EXPECT_NE(t.notes[0].find("[0, 1, 2] are all zero"), std::string::npos) << t.notes[0];
    for (const auto& n : t.notes) uneven_noted |= n.find("totals differ") != std::string::npos;
  }
  EXPECT_TRUE(uneven_noted);
  Trace all = MustImport(files);
  EXPECT_EQ(all.steps.size(), 8u);
}

TEST(ImportTraces, DomainCountsSumToTheTokenCounts) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string d = dir + "/olmoe-and-mixtral-domain-counts/";
  for (const char* domain : {"arxiv", "book", "c4"}) {
    struct Case {
      std::string model;
      int experts, top_k;
      double per_layer;
    };
    for (const Case& c : {Case{"olmoe", 64, 8, 1671168}, Case{"mistral", 8, 2, 417792}}) {
      for (const std::string kind : {"expert_counts", "expert_counts_crosslayer"}) {
        Trace t = MustImport({d + c.model + "__" + kind + "__" + domain + ".json"});
        EXPECT_EQ(t.info.model, c.model);
        EXPECT_EQ(t.info.domain, domain);
        EXPECT_EQ(t.info.num_experts, c.experts);
        EXPECT_EQ(t.info.top_k, c.top_k);
        EXPECT_EQ(t.info.layer_ids, (std::vector<LayerId>{0, 7, 15}));
        for (const LayerSummary& l : SummarizeTrace(t).layers)
          EXPECT_EQ(l.assignments, c.per_layer);
        if (kind == "expert_counts_crosslayer") {
          ASSERT_EQ(t.cross_layer.size(), 2u);
          EXPECT_EQ(t.cross_layer[1].from_layer, 7);
          EXPECT_EQ(t.cross_layer[1].to_layer, 15);
        }
      }
      Trace top1 = MustImport({d + c.model + "__expert_counts_top1__" + domain + ".json"});
      EXPECT_EQ(top1.info.top_k, 1);
      for (const LayerSummary& l : SummarizeTrace(top1).layers) EXPECT_EQ(l.assignments, 208896);
    }
  }
  // Domains in sequence: the drift scenario.
  Trace drift = MustImport(FilesIn(d, "olmoe__expert_counts__"));
  EXPECT_EQ(drift.steps.size(), 3u);
  EXPECT_EQ(drift.info.domain, "arxiv,book,c4");
}

TEST(ImportTraces, MmluPopularityIs32By8) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  for (const char* variant : {"mixtral_8x7b_instruct", "mixtral_8x7b_original"}) {
    const auto files = FilesIn(dir + "/mixtral-8x7b-mmlu-popularity/" + variant, ".json");
    ASSERT_EQ(files.size(), 7u);
    for (const std::string& f : files) {
      Trace t = MustImport({f});
      EXPECT_EQ(t.info.format, "expert-popularity");
      EXPECT_EQ(t.info.num_layers(), 32);
      EXPECT_EQ(t.info.num_experts, 8);
      EXPECT_FALSE(t.info.domain.empty());
    }
  }
}

TEST(ImportTraces, SwitchBase128Has206866TokensPerLayer) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  Trace t = MustImport({dir + "/switch-base-128-counts/expert_statistics_3d.json"});
  EXPECT_EQ(t.info.format, "expert-usage-by-layer");
  EXPECT_EQ(t.info.layer_ids, (std::vector<LayerId>{1, 3, 5, 7, 9, 11}));
  EXPECT_EQ(t.info.num_experts, 128);
  EXPECT_EQ(t.info.top_k, 1);
  for (const LayerSummary& l : SummarizeTrace(t).layers) EXPECT_EQ(l.assignments, 206866);
}

TEST(ImportTraces, FilesThatDoNotFitTogetherFailNamingTheFile) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string sw = dir + "/switch-base-128-counts/expert_statistics_3d.json";
  StatusOr<Trace> t =
      ImportTraces({dir + "/olmoe-and-mixtral-domain-counts/olmoe__expert_counts__c4.json", sw});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find(sw), std::string::npos) << t.status().message();
}

}  // namespace
}  // namespace grace
