// TraceSummary: the figures `gracectl trace info` reports for a trace: steps, tokens, and per
// layer the assignments, the hottest expert and its load over the layer mean.
//
// TraceSummaryBuilder takes steps one at a time, so a native trace is summarised while it
// streams. Plain values; a builder is used by one thread.
#pragma once

#include <cstdint>
#include <vector>

#include "core/trace.h"

namespace grace {

struct LayerSummary {
  LayerId layer = 0;
  double assignments = 0;  // (token, expert) pairs routed at this layer
  ExpertId hottest = 0;
  double hottest_load = 0;
  double mean_load = 0;          // assignments / experts
  double hottest_over_mean = 0;  // 0 for a layer with no load
};

struct TraceSummary {
  int64_t steps = 0;
  int64_t tokens = 0;  // token-level steps only
  double assignments = 0;
  std::vector<LayerSummary> layers;
};

class TraceSummaryBuilder {
 public:
  explicit TraceSummaryBuilder(const TraceInfo& info);
  void Add(const TraceStep& step);
  TraceSummary Finish() const;

 private:
  TraceInfo info_;
  int64_t steps_ = 0;
  int64_t tokens_ = 0;
  std::vector<double> loads_;  // [layer][expert]
};

TraceSummary SummarizeTrace(const Trace& trace);

}  // namespace grace
