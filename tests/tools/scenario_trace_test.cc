// `gracectl trace from-scenario`: a scenario's phases become one native token-level trace whose
// shape is what the options say and whose hot experts move as the sources' do; bad scenarios
// exit 2 naming the phase and its source.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/native_trace.h"
#include "core/synthetic_trace.h"
#include "core/trace_import.h"
#include "tests/testing/real_traces.h"
#include "tests/testing/run_command.h"

namespace grace {
namespace {

using grace::testing::CommandRun;

CommandRun Gracectl(const std::string& args) {
  return grace::testing::RunCommand(std::string(GRACECTL_PATH) + " " + args);
}

// A fresh folder per test for the scenario, its sources and the trace.
std::string TestDir() {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "scenario_trace" / test->name();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// A count-only source in the OLMoE/Mixtral expert-counts format (core/import_expert_counts.cc):
// at every layer, expert hot(layer) has weight 60 and the others 10.
void WriteCounts(const std::string& path, int experts, const std::vector<int>& layers,
                 int (*hot)(int layer)) {
  nlohmann::json doc = {{"model", "toy"},   {"kind", "expert_counts"}, {"domain", "toy"},
                        {"layers", layers}, {"num_experts", experts},  {"counts", {}}};
  for (int layer : layers) {
    std::vector<double> counts(experts, 10.0);
    counts[hot(layer)] = 60.0;
    doc["counts"][std::to_string(layer)] = counts;
  }
  std::ofstream(path) << doc.dump();
}

int HotInA(int layer) {
  return layer + 1;
}
int HotInB(int layer) {
  return 14 - layer;
}

std::string Phase(const std::string& source, int steps, int tokens, const std::string& extra = "",
                  int top_k = 2) {
  return "[[phase]]\nsource = \"" + source + "\"\nsteps = " + std::to_string(steps) +
         "\ntokens_per_step = " + std::to_string(tokens) + "\ntop_k = " + std::to_string(top_k) +
         "\n" + extra + "\n";
}

std::string WriteScenario(const std::string& dir, const std::string& phases) {
  const std::string path = dir + "/scenario.toml";
  std::ofstream(path) << "[topology]\nnodes = 1\ngpus_per_node = 2\nslots_per_gpu = 8\n\n"
                      << phases;
  return path;
}

// Per expert, the assignments at layer index `layer` over steps [first, last).
std::vector<double> Loads(const Trace& trace, int layer, int first, int last) {
  std::vector<double> load(trace.info.num_experts, 0.0);
  for (int s = first; s < last; ++s) {
    const TokenBatch& b = trace.steps[s].tokens;
    const size_t per_layer = static_cast<size_t>(b.num_tokens) * trace.info.top_k;
    for (size_t i = 0; i < per_layer; ++i) load[b.expert_ids[layer * per_layer + i]] += 1.0;
  }
  return load;
}

int Hottest(const std::vector<double>& load) {
  return static_cast<int>(std::max_element(load.begin(), load.end()) - load.begin());
}

TEST(TraceFromScenario, WritesEveryPhaseAsTokensWhoseHotExpertsMove) {
  const std::string dir = TestDir();
  WriteCounts(dir + "/a.json", 16, {0, 3, 5}, HotInA);
  WriteCounts(dir + "/b.json", 16, {0, 3, 5}, HotInB);
  const std::string scenario =
      WriteScenario(dir, Phase("a.json", 5, 64) + Phase("b.json", 7, 64, "seed = 9"));
  const std::string out = dir + "/out.gtrace";
  const CommandRun r =
      Gracectl("trace from-scenario --scenario " + scenario + " -o " + out + " --layers 5,0");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("phase 1/2 a.json: steps [0, 5) x 64 tokens, sampled"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("phase 2/2 b.json: steps [5, 12)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("12 steps, 768 tokens, 2 layers (0,5) x 16 experts, top-2"),
            std::string::npos)
      << r.out;

  StatusOr<Trace> trace = ReadNativeTrace(out);
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  EXPECT_EQ(trace->info.kind, TraceKind::kTokens);
  EXPECT_EQ(trace->info.layer_ids, (std::vector<LayerId>{0, 5}));
  EXPECT_EQ(trace->info.num_experts, 16);
  EXPECT_EQ(trace->info.top_k, 2);
  ASSERT_EQ(trace->steps.size(), 12u);
  for (const TraceStep& step : trace->steps) {
    ASSERT_EQ(step.tokens.num_tokens, 64);
    ASSERT_EQ(step.tokens.expert_ids.size(), 2u * 64 * 2);
    for (size_t i = 0; i < step.tokens.expert_ids.size(); i += 2) {
      ASSERT_NE(step.tokens.expert_ids[i], step.tokens.expert_ids[i + 1]);
    }
  }
  EXPECT_EQ(Hottest(Loads(*trace, 0, 0, 5)), HotInA(0));
  EXPECT_EQ(Hottest(Loads(*trace, 1, 0, 5)), HotInA(5));
  EXPECT_EQ(Hottest(Loads(*trace, 0, 5, 12)), HotInB(0));
  EXPECT_EQ(Hottest(Loads(*trace, 1, 5, 12)), HotInB(5));
  // The header says which steps came from which phase.
  bool noted = false;
  for (const std::string& note : trace->notes) noted |= note.find("steps [5, 12)") == 0;
  EXPECT_TRUE(noted);
}

TEST(TraceFromScenario, ScalesStepsAndTokensSpreadsLayersAndIsReproducible) {
  const std::string dir = TestDir();
  WriteCounts(dir + "/a.json", 16, {0, 3, 5}, HotInA);
  WriteCounts(dir + "/b.json", 16, {0, 3, 5}, HotInB);
  const std::string scenario =
      WriteScenario(dir, Phase("a.json", 5, 64) + Phase("b.json", 7, 64, "noise = 0.1"));
  const std::string args = "trace from-scenario --scenario " + scenario +
                           " --steps-scale 0.5 --tokens-per-step 16 --max-layers 2 -o ";
  ASSERT_EQ(Gracectl(args + dir + "/one.gtrace").exit_code, 0);
  ASSERT_EQ(Gracectl(args + dir + "/two.gtrace").exit_code, 0);
  ASSERT_EQ(Gracectl(args + dir + "/other.gtrace --seed 5").exit_code, 0);
  StatusOr<Trace> one = ReadNativeTrace(dir + "/one.gtrace");
  StatusOr<Trace> two = ReadNativeTrace(dir + "/two.gtrace");
  StatusOr<Trace> other = ReadNativeTrace(dir + "/other.gtrace");
  ASSERT_TRUE(one.ok() && two.ok() && other.ok());
  EXPECT_EQ(one->info.layer_ids, (std::vector<LayerId>{0, 5}));
  ASSERT_EQ(one->steps.size(), 3u + 4u);  // 2.5 and 3.5 round away from zero
  bool same = true, same_as_other = true;
  for (size_t s = 0; s < one->steps.size(); ++s) {
    EXPECT_EQ(one->steps[s].tokens.num_tokens, 16);
    same &= one->steps[s].tokens.expert_ids == two->steps[s].tokens.expert_ids;
    same_as_other &= one->steps[s].tokens.expert_ids == other->steps[s].tokens.expert_ids;
  }
  EXPECT_TRUE(same);
  EXPECT_FALSE(same_as_other);
}

TEST(TraceFromScenario, ReplaysATokenLevelSourceInItsWindow) {
  const std::string dir = TestDir();
  WriteCounts(dir + "/a.json", 16, {0, 1, 2}, HotInA);
  SyntheticTraceOptions o;
  o.experts = 16;
  o.top_k = 2;
  o.layers = 3;
  o.steps = 2;
  o.tokens_per_step = 10;
  o.phases = 1;
  const Trace source = SynthesizeTrace(o);
  ASSERT_TRUE(WriteNativeTrace(dir + "/tokens.gtrace", source).ok());
  const std::string scenario =
      WriteScenario(dir, Phase("a.json", 2, 4) +
                             Phase("tokens.gtrace", 3, 4, "first_token = 3\nlast_token = 13"));
  const CommandRun r = Gracectl("trace from-scenario --scenario " + scenario + " -o " + dir +
                                "/out.gtrace --layers 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("replayed tokens [3, 13)"), std::string::npos) << r.out;
  StatusOr<Trace> trace = ReadNativeTrace(dir + "/out.gtrace");
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  ASSERT_EQ(trace->steps.size(), 5u);
  // The source's token t at layer 2 (its third layer): steps of 10 tokens.
  auto source_ids = [&](int t) {
    const std::vector<ExpertId>& ids = source.steps[t / 10].tokens.expert_ids;
    const size_t at = (2 * 10 + t % 10) * 2;
    return std::vector<ExpertId>(ids.begin() + at, ids.begin() + at + 2);
  };
  const std::vector<int> expected = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 3, 4};  // wraps at 13
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::vector<ExpertId>& ids = trace->steps[2 + i / 4].tokens.expert_ids;
    EXPECT_EQ(std::vector<ExpertId>(ids.begin() + (i % 4) * 2, ids.begin() + (i % 4) * 2 + 2),
              source_ids(expected[i]))
        << "replayed token " << i;
  }
}

TEST(TraceFromScenario, BadInputExitsTwoNamingThePhaseAndSource) {
  const std::string dir = TestDir();
  WriteCounts(dir + "/a.json", 16, {0, 3, 5}, HotInA);
  WriteCounts(dir + "/wide.json", 32, {0, 3, 5}, HotInB);
  WriteCounts(dir + "/short.json", 16, {0, 3}, HotInB);
  const std::string out = " -o " + dir + "/out.gtrace";

  std::string scenario = WriteScenario(dir, Phase("a.json", 2, 8) + Phase("wide.json", 2, 8));
  CommandRun r = Gracectl("trace from-scenario --scenario " + scenario + out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("phase 2 (wide.json): 32 experts, top-2, but"), std::string::npos) << r.out;

  scenario = WriteScenario(dir, Phase("a.json", 2, 8) + Phase("short.json", 2, 8));
  r = Gracectl("trace from-scenario --scenario " + scenario + out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("phase 2 (short.json): layers 0,3, but"), std::string::npos) << r.out;
  r = Gracectl("trace from-scenario --scenario " + scenario + out + " --layers 0,5");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("phase 2 (short.json): no layer 5"), std::string::npos) << r.out;
  // Layers every phase has are fine.
  r = Gracectl("trace from-scenario --scenario " + scenario + out + " --layers 0,3");
  EXPECT_EQ(r.exit_code, 0) << r.out;

  SyntheticTraceOptions o;
  o.experts = 16;
  o.top_k = 2;
  o.layers = 3;
  o.steps = 1;
  o.tokens_per_step = 10;
  o.phases = 1;
  ASSERT_TRUE(WriteNativeTrace(dir + "/tokens.gtrace", SynthesizeTrace(o)).ok());
  scenario =
      WriteScenario(dir, Phase("short.json", 2, 8) +
                             Phase("tokens.gtrace", 2, 8, "first_token = 4\nlast_token = 11"));
  r = Gracectl("trace from-scenario --scenario " + scenario + out + " --layers 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("phase 2 (tokens.gtrace): token window [4, 11) is not inside the source's "
                       "10 tokens"),
            std::string::npos)
      << r.out;

  r = Gracectl("trace from-scenario --scenario " + dir + "/missing.toml" + out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("missing.toml"), std::string::npos) << r.out;
}

// Per expert, the share of the assignments.
std::vector<double> Shares(const std::vector<double>& load) {
  double total = 0;
  for (double v : load) total += v;
  std::vector<double> share;
  for (double v : load) share.push_back(v / total);
  return share;
}

std::set<int> TopExperts(const std::vector<double>& load, int n) {
  std::vector<int> order(load.size());
  for (size_t e = 0; e < order.size(); ++e) order[e] = static_cast<int>(e);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return load[a] > load[b]; });
  return std::set<int>(order.begin(), order.begin() + n);
}

double L1(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += std::abs(a[i] - b[i]);
  return d;
}

// OLMoE's arxiv -> book switch survives sampling: each phase's top experts are the source's,
// and they differ between the phases as much as the sources' do. --match-shares keeps the
// hot experts' shares, which plain top-k sampling flattens.
TEST(TraceFromScenario, KeepsTheOlmoeDomainSwitch) {
  GRACE_REQUIRE_REAL_TRACES(real);
  const std::string dir = TestDir();
  const std::string counts = real + "/olmoe-and-mixtral-domain-counts/olmoe__expert_counts__";
  const std::string scenario = WriteScenario(dir, Phase(counts + "arxiv.json", 20, 1024, "", 8) +
                                                      Phase(counts + "book.json", 20, 1024, "", 8));
  StatusOr<Trace> arxiv = ImportTraces({counts + "arxiv.json"});
  StatusOr<Trace> book = ImportTraces({counts + "book.json"});
  ASSERT_TRUE(arxiv.ok() && book.ok());
  const auto arxiv_loads = arxiv->LayerLoads(), book_loads = book->LayerLoads();

  for (const std::string flag : {"", " --match-shares"}) {
    const std::string out = dir + "/olmoe.gtrace";
    const CommandRun r =
        Gracectl("trace from-scenario --scenario " + scenario + " -o " + out + flag);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    StatusOr<Trace> trace = ReadNativeTrace(out);
    ASSERT_TRUE(trace.ok()) << trace.status().ToString();
    ASSERT_EQ(trace->info.layer_ids, arxiv->info.layer_ids);
    for (int l = 0; l < trace->info.num_layers(); ++l) {
      const std::vector<double> a = Loads(*trace, l, 0, 20), b = Loads(*trace, l, 20, 40);
      const int layer = trace->info.layer_ids[l];
      SCOPED_TRACE("layer " + std::to_string(layer) + flag);
      EXPECT_EQ(Hottest(a), Hottest(arxiv_loads[l]));
      EXPECT_EQ(Hottest(b), Hottest(book_loads[l]));
      std::set<int> sampled_common, source_common;
      const std::set<int> top_a = TopExperts(a, 8), top_b = TopExperts(b, 8);
      const std::set<int> src_a = TopExperts(arxiv_loads[l], 8);
      const std::set<int> src_b = TopExperts(book_loads[l], 8);
      std::set_intersection(top_a.begin(), top_a.end(), top_b.begin(), top_b.end(),
                            std::inserter(sampled_common, sampled_common.begin()));
      std::set_intersection(src_a.begin(), src_a.end(), src_b.begin(), src_b.end(),
                            std::inserter(source_common, source_common.begin()));
      EXPECT_LE(sampled_common.size(), source_common.size() + 1);
      EXPECT_LE(source_common.size(), 4u);  // the switch the test is about
      const double l1 = L1(Shares(a), Shares(arxiv_loads[l]));
      std::printf("arxiv layer %d%s: L1(sampled, source shares) %.4f, hottest %.4f vs %.4f\n",
                  layer, flag.c_str(), l1, Shares(a)[Hottest(arxiv_loads[l])],
                  Shares(arxiv_loads[l])[Hottest(arxiv_loads[l])]);
      if (flag.empty()) {
        EXPECT_GT(l1, 0.05);  // flattened (policy/load_sampling.h)
      } else {
        EXPECT_LT(l1, 0.02);
      }
    }
  }
}

}  // namespace
}  // namespace grace
