// Prometheus text exposition of DaemonMetrics. Labels are per layer only, so a 61-layer model
// produces a few hundred series whatever the number of experts and ranks.
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
  Header(out, "grace_decisions_total", "counter", "Decisions recorded.");
  out << "grace_decisions_total " << m.decisions_total << '\n';
  Header(out, "grace_forecast_mape", "gauge", "Mean absolute percentage error of the forecast.");
  out << "grace_forecast_mape " << m.forecast_mape << '\n';
  Header(out, "grace_forecast_last_value_mape", "gauge", "The same for a last-value forecast.");
  out << "grace_forecast_last_value_mape " << m.last_value_mape << '\n';
  Header(out, "grace_agents", "gauge", "Agents by state.");
  out << "grace_agents{state=\"up\"} " << m.agents_up << '\n';
  out << "grace_agents{state=\"lost\"} " << m.agents_lost << '\n';
  Header(out, "grace_control_round_seconds", "gauge",
         "Duration of the last control round (aggregate, forecast, decide).");
  out << "grace_control_round_seconds " << m.control_round_ms / 1000 << '\n';
  Header(out, "grace_control_round_max_seconds", "gauge", "The slowest control round so far.");
  out << "grace_control_round_max_seconds " << m.control_round_max_ms / 1000 << '\n';
  Header(out, "grace_load_reports_total", "counter", "Load reports received from agents.");
  out << "grace_load_reports_total " << m.load_reports_total << '\n';
  return out.str();
}

}  // namespace grace
