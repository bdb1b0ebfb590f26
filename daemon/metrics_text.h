// Pieces of graced's Prometheus text exposition (format 0.0.4) shared by the control plane's
// metrics (PrometheusText in daemon/rest_api.h) and the HTTP server's own (daemon/http_metrics.h).
//
// Per-layer series are bounded: a model with more than kMaxLayerSeries MoE layers exports them
// per group of adjacent layers (label layer="3-4"), so the series count stays fixed whatever the
// model (docs/operations.md, "Metrics").
//
// Thread contract: pure functions.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/histogram.h"
#include "core/ids.h"

namespace grace {

inline constexpr size_t kMaxLayerSeries = 64;

// Layers [first, end) (indices into the model's layer ids) exported as one series, `label`
// being the layer id, or "<first id>-<last id>" for a group of several.
struct LayerGroup {
  std::string label;
  size_t first = 0, end = 0;
};

// At most `max_groups` groups of equal size (the last may be smaller), in layer order.
std::vector<LayerGroup> LayerGroups(const std::vector<LayerId>& layer_ids, size_t max_groups);

// "# HELP name help" and "# TYPE name type".
void WriteMetricHeader(std::ostream& out, std::string_view name, std::string_view type,
                       std::string_view help);

// The sample lines of histogram `h`: name_bucket{labels,le="..."} for every bound and +Inf
// (cumulative), name_sum{labels}, name_count{labels}. `labels` is `key="value",...` or empty.
void WriteHistogramSamples(std::ostream& out, std::string_view name, std::string_view labels,
                           const Histogram& h);

}  // namespace grace
