#include "policy/change_detector.h"

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/trace_import.h"
#include "policy/load_sampling.h"
#include "tests/testing/real_traces.h"

namespace grace {
namespace {

// [layer][expert] frequencies of one OLMoE domain (layers 0, 7, 15; 64 experts).
std::vector<double> DomainWeights(const std::string& dir, const std::string& domain) {
  StatusOr<Trace> trace = ImportTraces(
      {dir + "/olmoe-and-mixtral-domain-counts/olmoe__expert_counts__" + domain + ".json"});
  EXPECT_TRUE(trace.ok()) << trace.status().ToString();
  if (!trace.ok()) return {};
  std::vector<double> flat;
  for (const auto& layer : trace->LayerLoads()) flat.insert(flat.end(), layer.begin(), layer.end());
  return flat;
}

constexpr int kLayers = 3;
constexpr int kExperts = 64;
constexpr int64_t kDrawsPerStep = 2048 * 8;  // 2048 tokens, top-8

TEST(LoadShiftDetector, StaysQuietOnAStationaryRealSource) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  for (const std::string domain : {"arxiv", "book", "c4"}) {
    const std::vector<double> w = DomainWeights(dir, domain);
    ASSERT_EQ(w.size(), static_cast<size_t>(kLayers * kExperts));
    std::mt19937_64 rng(11);
    LoadShiftDetector detector(kLayers, kExperts);
    for (int step = 0; step < 1000; ++step) {
      const std::vector<double> counts = SampleCountStep(w, kExperts, kDrawsPerStep, 0.0, rng);
      const std::vector<int> fired = detector.Update(Eigen::Map<const Eigen::ArrayXd>(
          counts.data(), static_cast<Eigen::Index>(counts.size())));
      EXPECT_TRUE(fired.empty()) << domain << ": alarm at step " << step << " in layer "
                                 << fired[0];
    }
    EXPECT_EQ(detector.alarms(), 0) << domain;
  }
}

TEST(LoadShiftDetector, FiresOnARealDomainSwitch) {
  GRACE_REQUIRE_REAL_TRACES(dir);
  const std::vector<std::pair<std::string, std::string>> switches = {
      {"arxiv", "book"}, {"book", "c4"}, {"c4", "arxiv"}};
  for (const auto& [from, to] : switches) {
    const std::vector<double> before = DomainWeights(dir, from);
    const std::vector<double> after = DomainWeights(dir, to);
    std::mt19937_64 rng(5);
    LoadShiftDetector detector(kLayers, kExperts);
    constexpr int kSwitchStep = 150;
    std::vector<int> first_alarm(kLayers, -1);
    for (int step = 0; step < kSwitchStep + 50; ++step) {
      const std::vector<double>& w = step < kSwitchStep ? before : after;
      const std::vector<double> counts = SampleCountStep(w, kExperts, kDrawsPerStep, 0.0, rng);
      for (int layer : detector.Update(Eigen::Map<const Eigen::ArrayXd>(
               counts.data(), static_cast<Eigen::Index>(counts.size())))) {
        if (first_alarm[layer] < 0) first_alarm[layer] = step;
      }
    }
    int layers_fired = 0;
    for (int layer = 0; layer < kLayers; ++layer) {
      if (first_alarm[layer] < 0) continue;
      ++layers_fired;
      EXPECT_GE(first_alarm[layer], kSwitchStep) << from << "->" << to << " layer " << layer;
      EXPECT_LE(first_alarm[layer], kSwitchStep + 5) << from << "->" << to << " layer " << layer;
    }
    // The switch moves the hot experts of most layers; at least two of three must notice.
    EXPECT_GE(layers_fired, 2) << from << "->" << to;
  }
}

TEST(LoadShiftDetector, IgnoresShiftsBelowTheFloor) {
  // A stationary, noise-free source: the divergence is exactly zero and nothing can fire.
  LoadShiftDetector detector(1, 4);
  Eigen::ArrayXd loads(4);
  loads << 10, 20, 30, 40;
  for (int step = 0; step < 100; ++step) EXPECT_TRUE(detector.Update(loads).empty());
  // A tiny permanent change of shares stays below min_divergence.
  loads << 10.1, 20, 30, 39.9;
  for (int step = 0; step < 100; ++step) EXPECT_TRUE(detector.Update(loads).empty());
  // A real shift of the hottest expert fires.
  loads << 40, 20, 30, 10;
  bool fired = false;
  for (int step = 0; step < 5; ++step) fired = fired || !detector.Update(loads).empty();
  EXPECT_TRUE(fired);
}

}  // namespace
}  // namespace grace
