// The native format: round trips keep every id and weight; damaged files fail naming the offset.
#include "core/native_trace.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/synthetic_trace.h"
#include "core/trace_import.h"
#include "tests/testing/real_traces.h"

namespace grace {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void ExpectSameSteps(const Trace& a, const Trace& b) {
  ASSERT_EQ(a.steps.size(), b.steps.size());
  for (size_t s = 0; s < a.steps.size(); ++s) {
    const TraceStep& x = a.steps[s];
    const TraceStep& y = b.steps[s];
    ASSERT_EQ(x.kind, y.kind);
    EXPECT_EQ(x.tokens.num_tokens, y.tokens.num_tokens);
    ASSERT_EQ(x.tokens.expert_ids, y.tokens.expert_ids) << "step " << s;
    ASSERT_EQ(x.tokens.gate_weights, y.tokens.gate_weights) << "step " << s;
    ASSERT_EQ(x.tokens.home_rank, y.tokens.home_rank);
    ASSERT_EQ(x.counts.counts, y.counts.counts);
    ASSERT_EQ(x.counts.coactivation, y.counts.coactivation);
  }
}

Trace RoundTrip(const Trace& t, const std::string& name) {
  const std::string path = TempPath(name);
  Status w = WriteNativeTrace(path, t);
  EXPECT_TRUE(w.ok()) << w.ToString();
  StatusOr<Trace> back = ImportTraces({path});  // detected by its magic
  EXPECT_TRUE(back.ok()) << back.status().ToString();
  if (!back.ok()) return {};
  EXPECT_EQ(back->info.format, "native");
  EXPECT_EQ(back->info.model, t.info.model);
  EXPECT_EQ(back->info.num_experts, t.info.num_experts);
  EXPECT_EQ(back->info.top_k, t.info.top_k);
  EXPECT_EQ(back->info.layer_ids, t.info.layer_ids);
  EXPECT_EQ(back->dropped.size(), t.dropped.size());
  ExpectSameSteps(t, *back);
  return std::move(back).value();
}

TEST(NativeTrace, SyntheticRoundTripForEveryIdWidth) {
  for (int experts : {60, 300, 70000}) {
    SyntheticTraceOptions o;
    o.experts = experts;
    o.steps = 5;
    o.tokens_per_step = 97;
    o.phases = 1;
    o.clusters = 4;
    Trace t = SynthesizeTrace(o);
    t.steps[2].tokens.home_rank.assign(97, 3);  // recorded home ranks survive too
    RoundTrip(t, "synthetic_" + std::to_string(experts) + ".gtrace");
  }
}

TEST(NativeTrace, CountsWithCoactivationRoundTrip) {
  Trace t;
  t.info.kind = TraceKind::kCounts;
  t.info.num_experts = 3;
  t.info.layer_ids = {3, 4};
  t.steps.resize(2);
  for (TraceStep& s : t.steps) {
    s.kind = TraceKind::kCounts;
    s.counts.counts = {1, 2, 3, 4, 5, 6e10};
  }
  t.steps[1].counts.coactivation.assign(18, 7.5);
  t.cross_layer.push_back({3, 4, std::vector<double>(9, 2.0)});
  t.notes.push_back("a note");
  Trace back = RoundTrip(t, "counts.gtrace");
  ASSERT_EQ(back.cross_layer.size(), 1u);
  EXPECT_EQ(back.cross_layer[0].matrix, t.cross_layer[0].matrix);
  EXPECT_EQ(back.notes.front(), "a note");
}

TEST(NativeTrace, RealTracesRoundTrip) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string q = dir + "/qwen1.5-moe-a2.7b-gsm8k/";
  for (const std::vector<std::string>& files : std::vector<std::vector<std::string>>{
           {q + "moe_layer0.jsonl", q + "moe_layer8.jsonl", q + "moe_layer12.jsonl"},
           {dir + "/mixtral-8x7b-instruct-humaneval-gsm8k/humaneval_2_routing.jsonl"},
           {dir + "/deepseek-v3-sglang-stats/prefill_in1024.json"},
           {dir + "/olmoe-and-mixtral-domain-counts/olmoe__expert_counts_crosslayer__c4.json"}}) {
    StatusOr<Trace> t = ImportTraces(files);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    Trace back = RoundTrip(*t, "real.gtrace");
    EXPECT_EQ(back.cross_layer.size(), t->cross_layer.size());
    EXPECT_EQ(back.TotalTokens(), t->TotalTokens());
  }
}

TEST(NativeTrace, ReaderStreamsAndRewinds) {
  SyntheticTraceOptions o;
  o.steps = 3;
  const Trace t = SynthesizeTrace(o);
  const std::string path = TempPath("stream.gtrace");
  ASSERT_TRUE(WriteNativeTrace(path, t).ok());
  StatusOr<NativeTraceReader> r = NativeTraceReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int pass = 0; pass < 2; ++pass) {
    TraceStep step;
    for (size_t s = 0; s < t.steps.size(); ++s) {
      StatusOr<bool> more = r->Next(&step);
      ASSERT_TRUE(more.ok() && *more) << more.status().ToString();
      EXPECT_EQ(step.tokens.expert_ids, t.steps[s].tokens.expert_ids);
    }
    StatusOr<bool> end = r->Next(&step);
    ASSERT_TRUE(end.ok());
    EXPECT_FALSE(*end);
    ASSERT_TRUE(r->Rewind().ok());
  }
}

class DamagedNativeTrace : public ::testing::Test {
 protected:
  void SetUp() override {
    SyntheticTraceOptions o;
    o.steps = 4;
    o.tokens_per_step = 16;
    ASSERT_TRUE(WriteNativeTrace(TempPath("good.gtrace"), SynthesizeTrace(o)).ok());
    bytes_ = ReadBytes(TempPath("good.gtrace"));
  }
  // The error from reading `bytes` to the end, or "" when it reads cleanly.
  static std::string ReadAll(std::string bytes) {
    StatusOr<NativeTraceReader> r = NativeTraceReader::FromMemory(std::move(bytes), "t.gtrace");
    if (!r.ok()) return r.status().message();
    TraceStep step;
    while (true) {
      StatusOr<bool> more = r->Next(&step);
      if (!more.ok()) return more.status().message();
      if (!*more) return "";
    }
  }
  std::string bytes_;
};

TEST_F(DamagedNativeTrace, EveryTruncationIsAnErrorWithAnOffset) {
  ASSERT_EQ(ReadAll(bytes_), "");
  for (size_t cut = 0; cut < bytes_.size(); cut += 7) {
    const std::string e = ReadAll(bytes_.substr(0, cut));
    EXPECT_NE(e, "") << "cut at " << cut << " read cleanly";
    EXPECT_NE(e.find("t.gtrace: "), std::string::npos) << e;
    EXPECT_NE(e.find("byte offset"), std::string::npos) << e;
  }
  // A cut exactly between two steps: the missing end chunk gives it away.
  const std::string e = ReadAll(bytes_.substr(0, bytes_.size() - 24));
  EXPECT_NE(e.find("without its end chunk"), std::string::npos) << e;
}

TEST_F(DamagedNativeTrace, EveryFlippedByteIsAnError) {
  for (size_t i = 0; i < bytes_.size(); ++i) {
    std::string garbled = bytes_;
    garbled[i] = static_cast<char>(garbled[i] ^ 0x41);
    EXPECT_NE(ReadAll(garbled), "") << "flip at " << i << " read cleanly";
  }
  std::string garbled = bytes_;
  garbled[200] ^= 1;
  EXPECT_NE(ReadAll(garbled).find("checksum"), std::string::npos) << ReadAll(garbled);
  EXPECT_NE(ReadAll("not a trace at all, just some text").find("bad magic"), std::string::npos);
  EXPECT_NE(ReadAll(bytes_ + "x").find("after the end chunk"), std::string::npos);
}

TEST(NativeTrace, WriterRejectsStepsThatDoNotMatchTheHeader) {
  TraceInfo info;
  info.num_experts = 4;
  info.top_k = 2;
  info.layer_ids = {0};
  StatusOr<NativeTraceWriter> w = NativeTraceWriter::Create(TempPath("bad.gtrace"), info);
  ASSERT_TRUE(w.ok());
  TraceStep step;
  step.tokens.num_tokens = 1;
  step.tokens.expert_ids = {1, 4};
  EXPECT_NE(w->Append(step).message().find("expert id 4 at index 1 is out of range"),
            std::string::npos);
  step.tokens.expert_ids = {1};
  EXPECT_FALSE(w->Append(step).ok());
  step.tokens.expert_ids = {1, 3};
  EXPECT_TRUE(w->Append(step).ok());
  EXPECT_TRUE(w->Close().ok());
}

}  // namespace
}  // namespace grace
