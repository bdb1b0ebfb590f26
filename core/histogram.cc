#include "core/histogram.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <functional>
#include <utility>

namespace grace {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {
  assert(std::adjacent_find(bounds_.begin(), bounds_.end(), std::greater_equal<double>()) ==
         bounds_.end());
  assert(std::all_of(bounds_.begin(), bounds_.end(), [](double b) { return std::isfinite(b); }));
}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[static_cast<size_t>(bucket)];
  ++count_;
  sum_ += value;
}

uint64_t Histogram::CumulativeCount(size_t i) const {
  uint64_t n = 0;
  for (size_t b = 0; b <= i && b < counts_.size(); ++b) n += counts_[b];
  return n;
}

std::vector<double> Histogram::OneTwoFiveBounds(double min, double max) {
  std::vector<double> out;
  if (!(min > 0) || !(max >= min)) return out;
  // Built from decimal exponents, not by repeated multiplication, so 0.0025 prints as 0.0025.
  for (int exponent = static_cast<int>(std::floor(std::log10(min))) - 1;; ++exponent) {
    for (double mantissa : {1.0, 2.5, 5.0}) {
      const double b =
          exponent < 0 ? mantissa / std::pow(10.0, -exponent) : mantissa * std::pow(10.0, exponent);
      if (b > max * (1 + 1e-12)) return out;
      if (b >= min * (1 - 1e-12)) out.push_back(b);
    }
  }
}

}  // namespace grace
