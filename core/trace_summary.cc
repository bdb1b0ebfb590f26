#include "core/trace_summary.h"

#include <algorithm>

namespace grace {

TraceSummaryBuilder::TraceSummaryBuilder(const TraceInfo& info)
    : info_(info), loads_(static_cast<size_t>(info.num_layers()) * info.num_experts, 0.0) {}

void TraceSummaryBuilder::Add(const TraceStep& step) {
  ++steps_;
  const size_t experts = static_cast<size_t>(info_.num_experts);
  if (step.kind == TraceKind::kCounts) {
    for (size_t i = 0; i < loads_.size() && i < step.counts.counts.size(); ++i)
      loads_[i] += step.counts.counts[i];
    return;
  }
  tokens_ += step.tokens.num_tokens;
  const size_t per_layer = static_cast<size_t>(step.tokens.num_tokens) * info_.top_k;
  for (size_t l = 0; l < static_cast<size_t>(info_.num_layers()); ++l) {
    double* layer = loads_.data() + l * experts;
    const size_t end = std::min(step.tokens.expert_ids.size(), (l + 1) * per_layer);
    for (size_t i = l * per_layer; i < end; ++i) {
      const ExpertId e = step.tokens.expert_ids[i];
      if (e >= 0 && static_cast<size_t>(e) < experts) layer[e] += 1.0;
    }
  }
}

TraceSummary TraceSummaryBuilder::Finish() const {
  TraceSummary s;
  s.steps = steps_;
  s.tokens = tokens_;
  const int experts = info_.num_experts;
  for (int l = 0; l < info_.num_layers(); ++l) {
    LayerSummary ls;
    ls.layer = info_.layer_ids[l];
    for (int e = 0; e < experts; ++e) {
      const double v = loads_[static_cast<size_t>(l) * experts + e];
      ls.assignments += v;
      if (v > ls.hottest_load) ls.hottest_load = v, ls.hottest = e;
    }
    ls.mean_load = experts > 0 ? ls.assignments / experts : 0;
    ls.hottest_over_mean = ls.mean_load > 0 ? ls.hottest_load / ls.mean_load : 0;
    s.assignments += ls.assignments;
    s.layers.push_back(ls);
  }
  return s;
}

TraceSummary SummarizeTrace(const Trace& trace) {
  TraceSummaryBuilder builder(trace.info);
  for (const TraceStep& step : trace.steps) builder.Add(step);
  return builder.Finish();
}

}  // namespace grace
