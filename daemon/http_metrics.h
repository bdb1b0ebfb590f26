// HttpRequestMetrics: graced's REST latency as the Prometheus histogram
// grace_http_request_duration_seconds{route, method, code}. The label set is bounded: `route`
// is one of the templates it was built with ("/api/v1/placements/{epoch}") or "other" (the UI's
// files, unknown paths), `method` one of a few verbs or "other", `code` a class ("2xx").
//
//   HttpRequestMetrics m({"/healthz", "/api/v1/placements/{epoch}"});
//   m.Observe("GET", "/api/v1/placements/7", 200, 0.002);  // route="/api/v1/placements/{epoch}"
//   m.WritePrometheus(out);
//
// Thread contract: Observe and WritePrometheus may be called from any thread (own mutex).
#pragma once

#include <map>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/histogram.h"

namespace grace {

class HttpRequestMetrics {
 public:
  // `routes`: path templates; a "{name}" segment matches any one segment.
  explicit HttpRequestMetrics(std::vector<std::string> routes);

  // The route label of `path` (query string excluded): its template, or "other".
  const std::string& RouteOf(std::string_view path) const;
  void Observe(std::string_view method, std::string_view path, int status, double seconds);
  // HELP, TYPE and every (route, method, code) histogram observed so far.
  void WritePrometheus(std::ostream& out) const;

  static std::vector<double> Bounds();  // 0.5 ms to 5 s

 private:
  std::vector<std::string> routes_;
  std::vector<std::vector<std::string>> route_segments_;
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, Histogram>
      by_key_;  // GUARDED_BY(mu_)
};

}  // namespace grace
