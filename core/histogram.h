// Histogram: counts of observed values in fixed buckets, with their sum and count: what a
// Prometheus histogram exports (daemon/metrics_text.h writes it as `_bucket{le=...}`, `_sum`,
// `_count`). The buckets are chosen once; an observation costs one binary search and no
// allocation.
//
//   Histogram h(Histogram::OneTwoFiveBounds(0.001, 10));  // 0.001, 0.0025, 0.005 ... 10
//   h.Observe(0.03);
//   h.CumulativeCount(4);  // observations <= upper_bounds()[4] = 0.025: 0
//
// Thread contract: none of its own (a value type); the owner serialises Observe and reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace grace {

class Histogram {
 public:
  // `upper_bounds`: finite, strictly ascending (checked with assert); +Inf is always implied.
  explicit Histogram(std::vector<double> upper_bounds);

  // Adds one observation to the first bucket whose bound is >= value (Prometheus's `le`).
  // NaN is ignored: it has no bucket, and would poison the sum.
  void Observe(double value);

  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Observations <= upper_bounds()[i]; i == upper_bounds().size() is the +Inf bucket, count().
  uint64_t CumulativeCount(size_t i) const;
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

  // 1, 2.5, 5 times the powers of ten from `min` to `max`, both included when on the series
  // (OneTwoFiveBounds(0.001, 10): 0.001, 0.0025, 0.005, 0.01 ... 5, 10; 13 bounds).
  static std::vector<double> OneTwoFiveBounds(double min, double max);

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last one is +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace grace
