#include "tools/scenario.h"

#include <filesystem>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "policy/online_simulator.h"
#include "tests/testing/real_traces.h"

namespace grace::tools {
namespace {

const char* kMinimal = R"(
[topology]
nodes = 2
gpus_per_node = 4
slots_per_gpu = 10

[[phase]]
source = "olmoe-and-mixtral-domain-counts/olmoe__expert_counts__arxiv.json"
steps = 3
tokens_per_step = 64
)";

TEST(Scenario, RefusesUnknownKeysNamingKeyAndLine) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string text = std::string(kMinimal) + "tokens_per_stpe = 5\n";
  StatusOr<Scenario> s = ParseScenario(text, "bad.toml", dir);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("tokens_per_stpe"), std::string::npos)
      << s.status().ToString();
  EXPECT_NE(s.status().message().find("line 11"), std::string::npos) << s.status().ToString();

  StatusOr<Scenario> t = ParseScenario(std::string(kMinimal) + "[extra]\nx = 1\n", "bad.toml", dir);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("extra"), std::string::npos) << t.status().ToString();
}

TEST(Scenario, OnlineKnobsReachTheDecision) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::string online = "[online]\ncooldown_steps = 3\nminimal_replan_evaluations = 48\n";
  std::string text = kMinimal;
  text.insert(text.find("[[phase]]"), online + "\n");
  StatusOr<Scenario> s = ParseScenario(text, "knobs.toml", dir);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->options.decision.cooldown_steps, 3);
  EXPECT_EQ(s->options.decision.minimal_replan_evaluations, 48);

  // Left out: 0, the search sizes its budget to the layer.
  StatusOr<Scenario> d = ParseScenario(kMinimal, "default.toml", dir);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->options.decision.minimal_replan_evaluations, 0);

  text.replace(text.find("= 48"), 4, "= -1");
  StatusOr<Scenario> bad = ParseScenario(text, "knobs.toml", dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("minimal_replan_evaluations"), std::string::npos)
      << bad.status().ToString();
}

TEST(Scenario, NamesTheSourceThatCannotBeImported) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  std::string text = kMinimal;
  text.replace(text.find("arxiv"), 5, "nope");
  StatusOr<Scenario> s = ParseScenario(text, "bad.toml", dir);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("source"), std::string::npos) << s.status().ToString();
}

TEST(Scenario, EveryShippedScenarioLoads) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::filesystem::path scenarios =
      std::filesystem::path(GRACE_SOURCE_DIR) / "config/scenarios";
  int loaded = 0;  // the shipped ones and the held-out ones in held_out/
  for (const auto& entry : std::filesystem::recursive_directory_iterator(scenarios)) {
    if (entry.path().extension() != ".toml") continue;
    StatusOr<Scenario> s = LoadScenario(entry.path().string());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    StatusOr<WorkloadStream> stream = WorkloadStream::Create(std::move(s->phases));
    ASSERT_TRUE(stream.ok()) << entry.path() << ": " << stream.status().ToString();
    ++loaded;
  }
  EXPECT_GE(loaded, 13);
}

// A short run of the OLMoE domain switch: every strategy is served, the switch is detected,
// and online's migrations respect the byte budget of each interval.
TEST(OnlineSimulation, FollowsARealDomainSwitchWithinItsBudget) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  std::string text = std::string(R"(
[topology]
nodes = 2
gpus_per_node = 4
slots_per_gpu = 10

[online]
byte_budget_mb = 130

[[phase]]
source = "olmoe-and-mixtral-domain-counts/olmoe__expert_counts__arxiv.json"
steps = 60
tokens_per_step = 4096

[[phase]]
source = "olmoe-and-mixtral-domain-counts/olmoe__expert_counts__book.json"
steps = 60
tokens_per_step = 4096
)");
  StatusOr<Scenario> s = ParseScenario(text, "switch.toml", dir);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  StatusOr<WorkloadStream> stream = WorkloadStream::Create(std::move(s->phases));
  ASSERT_TRUE(stream.ok()) << stream.status().ToString();
  std::vector<OnlineSimulationProgress> progress;
  StatusOr<OnlineSimulationReport> r =
      SimulateOnline(std::move(*stream), s->topology, s->params, s->options,
                     [&](const OnlineSimulationProgress& p) { progress.push_back(p); });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->steps, 120);
  // One progress call per step, ending on the report's totals.
  ASSERT_EQ(progress.size(), 120u);
  EXPECT_EQ(progress[59].phase, 0);
  EXPECT_EQ(progress[60].phase, 1);
  EXPECT_EQ(progress.back().step, 120);
  EXPECT_EQ(progress.back().total_steps, 120);
  EXPECT_EQ(progress.back().phases, 2);
  EXPECT_DOUBLE_EQ(progress.back().online_ms, r->online.total_ms);
  EXPECT_EQ(progress.back().migrations, r->online.migrations);
  EXPECT_EQ(r->online.step_ms.size(), 120u);
  EXPECT_GT(r->detector_alarms, 0);
  EXPECT_LT(r->forecast_mape, r->last_value_mape);
  // The oracle knows the book phase; static does not. Its move there, had it paid for it, copies
  // weights on top of the fixed cost.
  EXPECT_LT(r->oracle.total_ms, r->static_placement.total_ms);
  EXPECT_GT(r->oracle_move_ms, s->options.decision.fixed_cost_ms);
  std::map<int64_t, uint64_t> bytes_per_step;
  for (const DecisionRecord& d : r->decisions) {
    EXPECT_FALSE(d.reason.empty());
    bytes_per_step[d.step] += d.bytes;
  }
  for (const auto& [step, bytes] : bytes_per_step) {
    EXPECT_LE(bytes, 130'000'000u) << "step " << step;
  }
}

}  // namespace
}  // namespace grace::tools
