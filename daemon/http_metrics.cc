#include "daemon/http_metrics.h"

#include "daemon/metrics_text.h"

namespace grace {
namespace {

const std::string kOther = "other";

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string_view::npos ? path.size() : slash;
    out.push_back(path.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

std::string_view MethodLabel(std::string_view method) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    if (method == known) return known;
  }
  return "other";
}

std::string CodeLabel(int status) {
  if (status < 100 || status > 599) return "other";
  return std::to_string(status / 100) + "xx";
}

}  // namespace

HttpRequestMetrics::HttpRequestMetrics(std::vector<std::string> routes)
    : routes_(std::move(routes)) {
  for (const std::string& r : routes_) {
    std::vector<std::string> segments;
    for (std::string_view s : Segments(r)) segments.emplace_back(s);
    route_segments_.push_back(std::move(segments));
  }
}

const std::string& HttpRequestMetrics::RouteOf(std::string_view path) const {
  path = path.substr(0, path.find('?'));
  const std::vector<std::string_view> segments = Segments(path);
  for (size_t r = 0; r < routes_.size(); ++r) {
    const std::vector<std::string>& want = route_segments_[r];
    if (want.size() != segments.size()) continue;
    bool match = true;
    for (size_t i = 0; i < want.size() && match; ++i) {
      const bool wildcard = want[i].size() > 2 && want[i].front() == '{' && want[i].back() == '}';
      match = wildcard ? !segments[i].empty() : want[i] == segments[i];
    }
    if (match) return routes_[r];
  }
  return kOther;
}

void HttpRequestMetrics::Observe(std::string_view method, std::string_view path, int status,
                                 double seconds) {
  auto key = std::make_tuple(RouteOf(path), std::string(MethodLabel(method)), CodeLabel(status));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) it = by_key_.emplace(std::move(key), Histogram(Bounds())).first;
  it->second.Observe(seconds);
}

void HttpRequestMetrics::WritePrometheus(std::ostream& out) const {
  constexpr const char* kName = "grace_http_request_duration_seconds";
  WriteMetricHeader(out, kName, "histogram",
                    "REST, metrics and UI requests by route template, method and status class.");
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, histogram] : by_key_) {
    const auto& [route, method, code] = key;
    WriteHistogramSamples(out, kName,
                          "route=\"" + route + "\",method=\"" + method + "\",code=\"" + code + "\"",
                          histogram);
  }
}

std::vector<double> HttpRequestMetrics::Bounds() {
  return Histogram::OneTwoFiveBounds(0.0005, 5);
}

}  // namespace grace
