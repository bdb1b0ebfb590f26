// REST latency histograms: labelled by route template, so the label set stays bounded.
#include "daemon/http_metrics.h"

#include <sstream>

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(HttpMetricsTest, PathsMapToTheirTemplates) {
  HttpRequestMetrics m({"/healthz", "/api/v1/placements", "/api/v1/placements/{epoch}"});
  EXPECT_EQ(m.RouteOf("/healthz"), "/healthz");
  EXPECT_EQ(m.RouteOf("/api/v1/placements?limit=3"), "/api/v1/placements");
  EXPECT_EQ(m.RouteOf("/api/v1/placements/17"), "/api/v1/placements/{epoch}");
  EXPECT_EQ(m.RouteOf("/api/v1/placements/"), "other");  // an empty segment is no epoch
  EXPECT_EQ(m.RouteOf("/api/v1/placements/1/2"), "other");
  EXPECT_EQ(m.RouteOf("/index.html"), "other");
  EXPECT_EQ(m.RouteOf(""), "other");
}

TEST(HttpMetricsTest, ManyPathsOneSeriesPerRouteMethodAndClass) {
  HttpRequestMetrics m({"/api/v1/placements/{epoch}"});
  for (int epoch = 0; epoch < 1000; ++epoch) {
    m.Observe("GET", "/api/v1/placements/" + std::to_string(epoch), epoch < 10 ? 200 : 404, 0.002);
  }
  m.Observe("BREW", "/coffee", 418, 0.0001);
  std::ostringstream out;
  m.WritePrometheus(out);
  const std::string text = out.str();
  EXPECT_NE(text.find("# TYPE grace_http_request_duration_seconds histogram\n"), std::string::npos);
  const std::string ok = "route=\"/api/v1/placements/{epoch}\",method=\"GET\",code=\"2xx\"";
  EXPECT_NE(text.find("grace_http_request_duration_seconds_bucket{" + ok + ",le=\"0.001\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("grace_http_request_duration_seconds_bucket{" + ok + ",le=\"0.0025\"} 10\n"),
            std::string::npos);
  EXPECT_NE(text.find("grace_http_request_duration_seconds_count{route=\"/api/v1/placements/"
                      "{epoch}\",method=\"GET\",code=\"4xx\"} 990\n"),
            std::string::npos);
  EXPECT_NE(text.find("grace_http_request_duration_seconds_count{route=\"other\",method=\"other\","
                      "code=\"4xx\"} 1\n"),
            std::string::npos);
  // 3 series sets (2xx, 4xx, the teapot), each of 14 buckets + sum + count.
  size_t lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_EQ(lines, 2 + 3 * (HttpRequestMetrics::Bounds().size() + 1 + 2));
}

}  // namespace
}  // namespace grace
