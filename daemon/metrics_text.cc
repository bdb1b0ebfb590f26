// Prometheus text exposition of DaemonMetrics. Labels are per layer only, so a 61-layer model
// produces a few hundred series whatever the number of experts and ranks.
#include <algorithm>
#include <sstream>

#include "daemon/rest_api.h"

namespace grace {
namespace {

void Header(std::ostringstream& out, const char* name, const char* type, const char* help) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

}  // namespace

std::string PrometheusText(const DaemonMetrics& m) {
  std::ostringstream out;
  Header(out, "grace_epoch", "gauge", "Routing-table epoch in force.");
  out << "grace_epoch " << m.epoch << '\n';
  Header(out, "grace_paused", "gauge", "1 when the control loop is paused.");
  out << "grace_paused " << (m.paused ? 1 : 0) << '\n';
  Header(out, "grace_layer_imbalance", "gauge", "Max over mean GPU load, per MoE layer.");
  for (size_t i = 0; i < m.layer_imbalance.size() && i < m.layer_ids.size(); ++i) {
    out << "grace_layer_imbalance{layer=\"" << m.layer_ids[i] << "\"} " << m.layer_imbalance[i]
        << '\n';
  }
  Header(out, "grace_layer_cross_node_sends_per_token", "gauge",
         "Estimated cross-node sends per token, per MoE layer.");
  for (size_t i = 0; i < m.layer_cross_node_sends.size() && i < m.layer_ids.size(); ++i) {
    out << "grace_layer_cross_node_sends_per_token{layer=\"" << m.layer_ids[i] << "\"} "
        << m.layer_cross_node_sends[i] << '\n';
  }
  Header(out, "grace_migrations_total", "counter", "Migrations committed.");
  out << "grace_migrations_total " << m.migrations_total << '\n';
  Header(out, "grace_migrations_aborted_total", "counter", "Migrations aborted before commit.");
  out << "grace_migrations_aborted_total " << m.migrations_aborted_total << '\n';
  Header(out, "grace_migration_bytes_total", "counter", "Expert-weight bytes moved.");
  out << "grace_migration_bytes_total " << m.migration_bytes_total << '\n';
  Header(out, "grace_migrations_switch_timed_out_total", "counter",
         "Migrations committed whose SWITCHED did not all arrive within switch_timeout_ms.");
  out << "grace_migrations_switch_timed_out_total " << m.migrations_timed_out_total << '\n';
  Header(out, "grace_migration_phase", "gauge",
         "Phase of the migration in flight: 0 idle, 1 preparing, 2 ready-to-commit, 3 committed.");
  out << "grace_migration_phase " << m.migration_phase << '\n';
  Header(out, "grace_migration_age_seconds", "gauge",
         "Seconds since the PREPARE of the migration in flight (0 when idle).");
  out << "grace_migration_age_seconds " << m.migration_age_s << '\n';
  Header(out, "grace_decisions_total", "counter", "Decisions recorded.");
  out << "grace_decisions_total " << m.decisions_total << '\n';
  Header(out, "grace_forecast_mape", "gauge", "Mean absolute percentage error of the forecast.");
  out << "grace_forecast_mape " << m.forecast_mape << '\n';
  Header(out, "grace_forecast_last_value_mape", "gauge", "The same for a last-value forecast.");
  out << "grace_forecast_last_value_mape " << m.last_value_mape << '\n';
  Header(out, "grace_agents", "gauge", "Agents by state.");
  out << "grace_agents{state=\"up\"} " << m.agents_up << '\n';
  out << "grace_agents{state=\"lost\"} " << m.agents_lost << '\n';
  out << "grace_agents{state=\"left\"} " << m.agents_left << '\n';
  Header(out, "grace_control_round_seconds", "gauge",
         "Duration of the last control round (aggregate, forecast, decide).");
  out << "grace_control_round_seconds " << m.control_round_ms / 1000 << '\n';
  Header(out, "grace_control_round_max_seconds", "gauge", "The slowest control round so far.");
  out << "grace_control_round_max_seconds " << m.control_round_max_ms / 1000 << '\n';
  Header(out, "grace_load_reports_total", "counter", "Load reports received from agents.");
  out << "grace_load_reports_total " << m.load_reports_total << '\n';
  Header(out, "grace_coactivation_pairs_total", "counter",
         "Co-activation pairs received in load reports (top pairs per layer).");
  out << "grace_coactivation_pairs_total " << m.coactivation_pairs_total << '\n';
  Header(out, "grace_coactivation_sampled_mass_total", "counter",
         "Sampled co-activation counts the agents saw, sent or dropped beyond their top pairs.");
  out << "grace_coactivation_sampled_mass_total " << m.coactivation_sampled_mass_total << '\n';
  Header(out, "grace_coactivation_dropped_mass_total", "counter",
         "The part of those counts in pairs beyond the agents' top pairs (not sent).");
  out << "grace_coactivation_dropped_mass_total " << m.coactivation_dropped_mass_total << '\n';
  Header(out, "grace_load_report_sections_refused_total", "counter",
         "Load report sections refused as malformed (the report's counts are kept).");
  out << "grace_load_report_sections_refused_total{section=\"coactivation\"} "
      << m.coactivation_refused_total << '\n';
  out << "grace_load_report_sections_refused_total{section=\"traffic\"} " << m.traffic_refused_total
      << '\n';
  // Measured on the agents' real dispatch (docs/live-signal.md), cumulative.
  const size_t measured = std::min(m.measured_total.size(), m.layer_ids.size());
  auto per_layer = [&](const char* name, auto value) {
    for (size_t i = 0; i < measured; ++i) {
      out << name << "{layer=\"" << m.layer_ids[i] << "\"} " << value(m.measured_total[i]) << '\n';
    }
  };
  auto per_scope = [&](const char* name, auto node, auto cross_node) {
    for (size_t i = 0; i < measured; ++i) {
      const MeasuredLayerTraffic& t = m.measured_total[i];
      out << name << "{layer=\"" << m.layer_ids[i] << "\",scope=\"node\"} " << node(t) << '\n';
      out << name << "{layer=\"" << m.layer_ids[i] << "\",scope=\"cross_node\"} " << cross_node(t)
          << '\n';
    }
  };
  Header(out, "grace_measured_tokens_total", "counter",
         "Tokens through the MoE layer, measured on the agents' dispatch.");
  per_layer("grace_measured_tokens_total", [](const MeasuredLayerTraffic& t) { return t.tokens; });
  Header(out, "grace_measured_sends_total", "counter",
         "Token sends after deduplication: to other GPUs of the home node (scope node), to other "
         "nodes (scope cross_node).");
  per_scope(
      "grace_measured_sends_total", [](const MeasuredLayerTraffic& t) { return t.node_sends; },
      [](const MeasuredLayerTraffic& t) { return t.cross_node_sends; });
  Header(out, "grace_measured_send_bytes_total", "counter", "Bytes of those sends.");
  per_scope(
      "grace_measured_send_bytes_total",
      [](const MeasuredLayerTraffic& t) { return t.intra_node_bytes; },
      [](const MeasuredLayerTraffic& t) { return t.cross_node_bytes; });
  Header(out, "grace_measured_remote_sends_total", "counter",
         "Token sends to GPUs other than home on any node (the cost model's remote sends).");
  per_layer("grace_measured_remote_sends_total",
            [](const MeasuredLayerTraffic& t) { return t.remote_sends; });
  Header(out, "grace_measured_imbalance", "gauge",
         "Max over mean of (token, expert) pairs computed per GPU, latest window.");
  for (size_t i = 0; i < m.measured_window.size() && i < m.layer_ids.size(); ++i) {
    out << "grace_measured_imbalance{layer=\"" << m.layer_ids[i] << "\"} "
        << m.measured_window[i].imbalance << '\n';
  }
  return out.str();
}

}  // namespace grace
