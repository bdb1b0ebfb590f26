// Prometheus text exposition of DaemonMetrics. Labels are per layer (or group of layers, see
// daemon/metrics_text.h) only, so a 61-layer model produces a few hundred series whatever the
// number of experts and ranks.
#include "daemon/metrics_text.h"

#include <algorithm>
#include <sstream>

#include "daemon/rest_api.h"

namespace grace {

std::vector<LayerGroup> LayerGroups(const std::vector<LayerId>& layer_ids, size_t max_groups) {
  std::vector<LayerGroup> out;
  const size_t n = layer_ids.size();
  if (n == 0 || max_groups == 0) return out;
  const size_t size = (n + max_groups - 1) / max_groups;
  for (size_t first = 0; first < n; first += size) {
    const size_t end = std::min(n, first + size);
    std::string label = std::to_string(layer_ids[first]);
    if (end - first > 1) label += "-" + std::to_string(layer_ids[end - 1]);
    out.push_back({std::move(label), first, end});
  }
  return out;
}

void WriteMetricHeader(std::ostream& out, std::string_view name, std::string_view type,
                       std::string_view help) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

void WriteHistogramSamples(std::ostream& out, std::string_view name, std::string_view labels,
                           const Histogram& h) {
  const std::string sep = labels.empty() ? "" : ",";
  const std::vector<double>& bounds = h.upper_bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    out << name << "_bucket{" << labels << sep << "le=\"";
    if (i < bounds.size()) {
      out << bounds[i];
    } else {
      out << "+Inf";
    }
    out << "\"} " << h.CumulativeCount(i) << '\n';
  }
  const std::string braces = labels.empty() ? "" : "{" + std::string(labels) + "}";
  out << name << "_sum" << braces << ' ' << h.sum() << '\n';
  out << name << "_count" << braces << ' ' << h.count() << '\n';
}

namespace {

// One sample per layer group: `value(first, end)` folds the group's layers (indices) into one.
template <typename Value>
void PerLayer(std::ostream& out, const std::vector<LayerGroup>& groups, size_t available,
              std::string_view name, std::string_view extra_labels, Value value) {
  for (const LayerGroup& g : groups) {
    if (g.end > available) break;
    out << name << "{layer=\"" << g.label << '"' << extra_labels << "} " << value(g.first, g.end)
        << '\n';
  }
}

// A metric of one unlabelled sample: its header and its value.
template <typename Value>
void WriteScalar(std::ostream& out, std::string_view name, std::string_view type,
                 std::string_view help, const Value& value) {
  WriteMetricHeader(out, name, type, help);
  out << name << ' ' << value << '\n';
}

template <typename T, typename Field>
double Max(const std::vector<T>& v, size_t first, size_t end, Field field) {
  double m = field(v[first]);
  for (size_t i = first + 1; i < end; ++i) m = std::max(m, static_cast<double>(field(v[i])));
  return m;
}

template <typename T, typename Field>
auto Sum(const std::vector<T>& v, size_t first, size_t end, Field field) {
  decltype(field(v[first])) s = 0;
  for (size_t i = first; i < end; ++i) s += field(v[i]);
  return s;
}

}  // namespace

std::string PrometheusText(const DaemonMetrics& m) {
  std::ostringstream out;
  auto identity = [](double v) { return v; };
  const std::vector<LayerGroup> groups = LayerGroups(m.layer_ids, kMaxLayerSeries);
  WriteScalar(out, "grace_epoch", "gauge", "Routing-table epoch in force.", m.epoch);
  WriteScalar(out, "grace_paused", "gauge", "1 when the control loop is paused.", m.paused ? 1 : 0);
  WriteMetricHeader(out, "grace_layer_imbalance", "gauge",
                    "Max over mean GPU load, per MoE layer (the worst layer of a group).");
  PerLayer(out, groups, m.layer_imbalance.size(), "grace_layer_imbalance", "",
           [&](size_t a, size_t b) { return Max(m.layer_imbalance, a, b, identity); });
  WriteMetricHeader(out, "grace_layer_cross_node_sends_per_token", "gauge",
                    "Estimated cross-node sends per token, per MoE layer (a group's mean).");
  PerLayer(out, groups, m.layer_cross_node_sends.size(), "grace_layer_cross_node_sends_per_token",
           "", [&](size_t a, size_t b) {
             return Sum(m.layer_cross_node_sends, a, b, identity) / static_cast<double>(b - a);
           });
  WriteScalar(out, "grace_migrations_total", "counter", "Migrations committed.",
              m.migrations_total);
  WriteScalar(out, "grace_migrations_aborted_total", "counter", "Migrations aborted before commit.",
              m.migrations_aborted_total);
  WriteScalar(out, "grace_migration_integrity_failures_total", "counter",
              "Expert weights a rank received over the migration mesh that did not match "
              "their source's digest (each aborts its migration).",
              m.migration_integrity_failures_total);
  WriteScalar(out, "grace_migration_bytes_total", "counter", "Expert-weight bytes moved.",
              m.migration_bytes_total);
  WriteScalar(out, "grace_migration_in_progress", "gauge",
              "1 from a migration's PREPARE until every agent switched or it aborted.",
              m.migration_in_progress ? 1 : 0);
  WriteScalar(out, "grace_migration_running_seconds", "gauge",
              "Seconds since the PREPARE of the migration in progress (0 when none).",
              m.migration_running_s);
  WriteMetricHeader(out, "grace_migration_prepare_to_switch_seconds", "histogram",
                    "From PREPARE to the last agent's SWITCHED, per completed migration.");
  WriteHistogramSamples(out, "grace_migration_prepare_to_switch_seconds", "",
                        m.prepare_to_switch_seconds);
  WriteScalar(out, "grace_migrations_switch_timed_out_total", "counter",
              "Migrations committed whose SWITCHED did not all arrive within switch_timeout_ms.",
              m.migrations_timed_out_total);
  WriteScalar(
      out, "grace_migration_phase", "gauge",
      "Phase of the migration in flight: 0 idle, 1 preparing, 2 ready-to-commit, 3 committed.",
      m.migration_phase);
  WriteScalar(out, "grace_migration_age_seconds", "gauge",
              "Seconds since the PREPARE of the migration in flight (0 when idle).",
              m.migration_age_s);
  WriteScalar(out, "grace_decisions_total", "counter", "Decisions recorded.", m.decisions_total);
  WriteScalar(out, "grace_forecast_mape", "gauge",
              "Weighted absolute percentage error of the forecast since start.", m.forecast_mape);
  WriteScalar(out, "grace_forecast_last_value_mape", "gauge", "The same for a last-value forecast.",
              m.last_value_mape);
  WriteScalar(out, "grace_forecast_abs_error_total", "counter",
              "Sum over intervals and experts of |one-interval-ahead forecast - load| "
              "(tokens per step); divide its rate by grace_forecast_load_total's.",
              m.forecast_abs_error_total);
  WriteScalar(out, "grace_forecast_last_value_abs_error_total", "counter",
              "The same for a last-value forecast.", m.last_value_abs_error_total);
  WriteScalar(out, "grace_forecast_load_total", "counter",
              "Sum over the same intervals and experts of the observed load.",
              m.forecast_load_total);
  WriteMetricHeader(out, "grace_agents", "gauge", "Agents by state.");
  out << "grace_agents{state=\"up\"} " << m.agents_up << '\n';
  out << "grace_agents{state=\"lost\"} " << m.agents_lost << '\n';
  out << "grace_agents{state=\"left\"} " << m.agents_left << '\n';
  WriteScalar(out, "grace_control_round_seconds", "gauge",
              "Duration of the last control round (aggregate, forecast, decide).",
              m.control_round_ms / 1000);
  WriteScalar(out, "grace_control_round_max_seconds", "gauge", "The slowest control round so far.",
              m.control_round_max_ms / 1000);
  WriteMetricHeader(out, "grace_control_round_duration_seconds", "histogram",
                    "Duration of each control round (aggregate, forecast, decide).");
  WriteHistogramSamples(out, "grace_control_round_duration_seconds", "", m.control_round_seconds);
  WriteScalar(out, "grace_load_reports_total", "counter", "Load reports received from agents.",
              m.load_reports_total);
  WriteScalar(out, "grace_coactivation_pairs_total", "counter",
              "Co-activation pairs received in load reports (top pairs per layer).",
              m.coactivation_pairs_total);
  WriteScalar(
      out, "grace_coactivation_sampled_mass_total", "counter",
      "Sampled co-activation counts the agents saw, sent or dropped beyond their top pairs.",
      m.coactivation_sampled_mass_total);
  WriteScalar(out, "grace_coactivation_dropped_mass_total", "counter",
              "The part of those counts in pairs beyond the agents' top pairs (not sent).",
              m.coactivation_dropped_mass_total);
  WriteMetricHeader(out, "grace_load_report_sections_refused_total", "counter",
                    "Load report sections refused as malformed (the report's counts are kept).");
  out << "grace_load_report_sections_refused_total{section=\"coactivation\"} "
      << m.coactivation_refused_total << '\n';
  out << "grace_load_report_sections_refused_total{section=\"traffic\"} " << m.traffic_refused_total
      << '\n';
  WriteMetricHeader(out, "grace_agent_frames_refused_total", "counter",
                    "Agent frames refused by the protocol-state checks, never merged.");
  for (int r = 0; r < kFrameRefusalKinds; ++r) {
    out << "grace_agent_frames_refused_total{reason=\"" << FrameRefusalName(FrameRefusal(r))
        << "\"} " << m.frames_refused_total[r] << '\n';
  }
  // Measured on the agents' real dispatch (docs/live-signal.md), cumulative; a group's sums.
  const std::vector<MeasuredLayerTraffic>& t = m.measured_total;
  auto sum_of = [&](auto field) {
    return [&t, field](size_t a, size_t b) { return Sum(t, a, b, field); };
  };
  WriteMetricHeader(out, "grace_measured_tokens_total", "counter",
                    "Tokens through the MoE layer, measured on the agents' dispatch.");
  PerLayer(out, groups, t.size(), "grace_measured_tokens_total", "",
           sum_of([](const MeasuredLayerTraffic& l) { return l.tokens; }));
  WriteMetricHeader(
      out, "grace_measured_sends_total", "counter",
      "Token sends after deduplication: to other GPUs of the home node (scope node), to other "
      "nodes (scope cross_node).");
  PerLayer(out, groups, t.size(), "grace_measured_sends_total", ",scope=\"node\"",
           sum_of([](const MeasuredLayerTraffic& l) { return l.node_sends; }));
  PerLayer(out, groups, t.size(), "grace_measured_sends_total", ",scope=\"cross_node\"",
           sum_of([](const MeasuredLayerTraffic& l) { return l.cross_node_sends; }));
  WriteMetricHeader(out, "grace_measured_send_bytes_total", "counter", "Bytes of those sends.");
  PerLayer(out, groups, t.size(), "grace_measured_send_bytes_total", ",scope=\"node\"",
           sum_of([](const MeasuredLayerTraffic& l) { return l.intra_node_bytes; }));
  PerLayer(out, groups, t.size(), "grace_measured_send_bytes_total", ",scope=\"cross_node\"",
           sum_of([](const MeasuredLayerTraffic& l) { return l.cross_node_bytes; }));
  WriteMetricHeader(
      out, "grace_measured_remote_sends_total", "counter",
      "Token sends to GPUs other than home on any node (the cost model's remote sends).");
  PerLayer(out, groups, t.size(), "grace_measured_remote_sends_total", "",
           sum_of([](const MeasuredLayerTraffic& l) { return l.remote_sends; }));
  WriteMetricHeader(
      out, "grace_measured_imbalance", "gauge",
      "Max over mean of (token, expert) pairs computed per GPU, latest window (a group's worst).");
  PerLayer(out, groups, m.measured_window.size(), "grace_measured_imbalance", "",
           [&](size_t a, size_t b) {
             return Max(m.measured_window, a, b,
                        [](const MeasuredLayerTraffic& l) { return l.imbalance; });
           });
  return out.str();
}

}  // namespace grace
