// graced's Prometheus text: histograms in the exposition format, and per-layer series bounded
// for models with many layers.
#include "daemon/metrics_text.h"

#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "daemon/rest_api.h"

namespace grace {
namespace {

TEST(MetricsTextTest, HistogramSamplesAreCumulativeWithSumAndCount) {
  Histogram h({0.5, 1});
  h.Observe(0.25);
  h.Observe(0.75);
  h.Observe(4);
  std::ostringstream out;
  WriteHistogramSamples(out, "x_seconds", "route=\"/a\"", h);
  EXPECT_EQ(out.str(),
            "x_seconds_bucket{route=\"/a\",le=\"0.5\"} 1\n"
            "x_seconds_bucket{route=\"/a\",le=\"1\"} 2\n"
            "x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"
            "x_seconds_sum{route=\"/a\"} 5\n"
            "x_seconds_count{route=\"/a\"} 3\n");
  std::ostringstream bare;
  WriteHistogramSamples(bare, "y", "", Histogram({}));
  EXPECT_EQ(bare.str(), "y_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n");
}

TEST(MetricsTextTest, LayerGroupsAreOneLayerEachUpToTheCap) {
  const std::vector<LayerGroup> g = LayerGroups({3, 4, 60}, 64);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[2].label, "60");
  EXPECT_EQ(g[2].first, 2u);
  EXPECT_EQ(g[2].end, 3u);
}

TEST(MetricsTextTest, LayerGroupsOverTheCapCoverEveryLayerOnce) {
  std::vector<LayerId> ids;
  for (int i = 0; i < 130; ++i) ids.push_back(i + 1);
  const std::vector<LayerGroup> g = LayerGroups(ids, 64);
  ASSERT_EQ(g.size(), 44u);  // groups of 3, the last of 1
  EXPECT_EQ(g[0].label, "1-3");
  EXPECT_EQ(g[43].label, "130");
  size_t next = 0;
  for (const LayerGroup& group : g) {
    EXPECT_EQ(group.first, next);
    next = group.end;
  }
  EXPECT_EQ(next, ids.size());
}

// A 100-layer model: at most kMaxLayerSeries layer labels per metric; a group's imbalance is
// its worst layer's and its tokens the sum of its layers'.
TEST(MetricsTextTest, ManyLayersExportBoundedSeries) {
  DaemonMetrics m;
  for (int i = 0; i < 100; ++i) {
    m.layer_ids.push_back(i);
    m.layer_imbalance.push_back(1 + i / 100.0);
    m.layer_cross_node_sends.push_back(0.5);
    MeasuredLayerTraffic t;
    t.tokens = 10;
    t.imbalance = i == 7 ? 3.0 : 1.0;
    m.measured_total.push_back(t);
    m.measured_window.push_back(t);
  }
  const std::string text = PrometheusText(m);
  const std::regex sample(R"re(grace_layer_imbalance\{layer="([0-9-]+)"\} ([0-9.]+))re");
  std::set<std::string> labels;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), sample);
       it != std::sregex_iterator(); ++it) {
    labels.insert((*it)[1]);
  }
  EXPECT_EQ(labels.size(), 50u);
  EXPECT_LE(labels.size(), kMaxLayerSeries);
  EXPECT_NE(text.find("grace_layer_imbalance{layer=\"98-99\"} 1.99\n"), std::string::npos);
  EXPECT_NE(text.find("grace_layer_cross_node_sends_per_token{layer=\"0-1\"} 0.5\n"),
            std::string::npos);
  EXPECT_NE(text.find("grace_measured_tokens_total{layer=\"0-1\"} 20\n"), std::string::npos);
  EXPECT_NE(text.find("grace_measured_imbalance{layer=\"6-7\"} 3\n"), std::string::npos);
  EXPECT_EQ(text.find("layer=\"99\""), std::string::npos);
}

TEST(MetricsTextTest, DurationHistogramsAreExported) {
  DaemonMetrics m;
  m.control_round_seconds.Observe(0.003);
  m.prepare_to_switch_seconds.Observe(2);
  m.migration_in_progress = true;
  m.migration_running_s = 1.5;
  const std::string text = PrometheusText(m);
  EXPECT_NE(text.find("# TYPE grace_control_round_duration_seconds histogram\n"),
            std::string::npos);
  EXPECT_NE(text.find("grace_control_round_duration_seconds_bucket{le=\"0.0025\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("grace_control_round_duration_seconds_bucket{le=\"0.005\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("grace_control_round_duration_seconds_count 1\n"), std::string::npos);
  EXPECT_NE(text.find("grace_migration_prepare_to_switch_seconds_bucket{le=\"1\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("grace_migration_prepare_to_switch_seconds_bucket{le=\"2.5\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("grace_migration_prepare_to_switch_seconds_sum 2\n"), std::string::npos);
  EXPECT_NE(text.find("grace_migration_in_progress 1\n"), std::string::npos);
  EXPECT_NE(text.find("grace_migration_running_seconds 1.5\n"), std::string::npos);
}

}  // namespace
}  // namespace grace
