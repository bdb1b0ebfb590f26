// ControlPlane: what graced's REST API and metrics need from the daemon's core (the control
// loop, the agent registry and the history store), as one interface so the HTTP layer can be
// tested against a fake.
//
// Thread contract: every method may be called from any HTTP worker thread at any time; the
// implementation serialises with its own lock. WithHistory runs `fn` under that lock.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/histogram.h"
#include "core/ids.h"
#include "core/status.h"
#include "daemon/history_store.h"
#include "daemon/policy_settings.h"

namespace grace {

struct AgentStatus {
  std::string agent_id;
  NodeId node = 0;
  std::vector<RankId> ranks;
  std::string state;  // "up", "lost", "left" (said Goodbye)
  Epoch epoch = 0;
  uint64_t step = 0;
  int64_t last_seen_ms = 0;
};

// What the agents' dispatch really sent and computed in one layer, summed over their load
// reports' traffic sections (core/wire_protocol.h DispatchCounts; docs/live-signal.md).
// remote_sends / tokens is the cost model's LayerCost::remote_sends_per_token, measured, and
// cross_node_sends / tokens its cross_node_sends_per_token.
struct MeasuredLayerTraffic {
  uint64_t tokens = 0;
  uint64_t node_sends = 0;        // to other GPUs of the home node
  uint64_t remote_sends = 0;      // to GPUs other than home, on any node
  uint64_t cross_node_sends = 0;  // to nodes other than the home node
  uint64_t intra_node_bytes = 0;
  uint64_t cross_node_bytes = 0;
  std::vector<uint64_t> rank_load;  // [rank] (token, expert) pairs computed (may be left empty)
  double imbalance = 1;             // max / mean of rank_load over every rank (1 when none)
};

// Measured traffic per layer: cumulative since graced started, and over the latest window (the
// reports of the last control interval that had any).
struct TrafficSnapshot {
  Epoch epoch = 0;
  std::vector<LayerId> layer_ids;
  std::vector<MeasuredLayerTraffic> total;
  std::vector<MeasuredLayerTraffic> window;
};

// Why graced refused an agent's frame after the handshake (the protocol-state checks): a bounded
// set, each a label value of grace_agent_frames_refused_total.
enum class FrameRefusal {
  kStepBeyondRate = 0,  // Heartbeat, LoadReport or Switched further ahead than max_steps_per_s
  kNotInMigration = 1,  // Ready, Switched or Abort from an agent not in the current migration
};
inline constexpr int kFrameRefusalKinds = 2;
inline const char* FrameRefusalName(FrameRefusal r) {
  return r == FrameRefusal::kStepBeyondRate ? "step_beyond_rate" : "not_in_migration";
}

// Gauges and counters for GET /metrics and the UI's overview. Per layer, never per expert x
// rank, so the label cardinality stays bounded.
struct DaemonMetrics {
  Epoch epoch = 0;
  bool paused = false;
  std::vector<LayerId> layer_ids;
  std::vector<double> layer_imbalance;         // max / mean GPU load, per layer
  std::vector<double> layer_cross_node_sends;  // estimated cross-node sends per token
  uint64_t migrations_total = 0;
  uint64_t migrations_aborted_total = 0;
  uint64_t migration_bytes_total = 0;
  uint64_t migrations_timed_out_total = 0;  // committed, but not every SWITCHED in time
  // Agents' aborts because received weights failed their source's digest (migrate/weight_digest.h)
  uint64_t migration_integrity_failures_total = 0;
  int migration_phase = 0;     // the migration in flight: EpochCoordinator::Phase, 0 idle
  double migration_age_s = 0;  // since its PREPARE (0 when idle)
  uint64_t decisions_total = 0;
  double forecast_mape = 0;
  double last_value_mape = 0;
  int agents_up = 0;
  int agents_lost = 0;
  int agents_left = 0;  // said Goodbye (SIGTERM): not lost
  uint64_t load_reports_total = 0;
  uint64_t coactivation_pairs_total = 0;         // co-activation pairs received in load reports
  uint64_t coactivation_sampled_mass_total = 0;  // sampled pair counts, sent or dropped
  uint64_t coactivation_dropped_mass_total = 0;  // the part beyond the agents' top pairs
  uint64_t coactivation_refused_total = 0;       // load reports whose co-activation was refused
  uint64_t traffic_refused_total = 0;            // load reports whose traffic section was refused
  // Frames refused by the protocol-state checks, per FrameRefusal.
  std::array<uint64_t, kFrameRefusalKinds> frames_refused_total{};
  // Measured traffic per layer (rank_load left empty): cumulative, and the latest window's.
  std::vector<MeasuredLayerTraffic> measured_total;
  std::vector<MeasuredLayerTraffic> measured_window;
  double control_round_ms = 0;      // the last interval: aggregate, forecast, decide
  double control_round_max_ms = 0;  // the slowest so far
  Histogram control_round_seconds{Histogram::OneTwoFiveBounds(0.001, 10)};
  // Migrations: PREPARE to the last SWITCHED of each one that completed; the one in progress.
  Histogram prepare_to_switch_seconds{Histogram::OneTwoFiveBounds(0.1, 500)};
  bool migration_in_progress = false;
  double migration_running_s = 0;  // since its PREPARE; 0 when none
  // Sums over intervals and experts (tokens per step) of the one-interval-ahead forecast's
  // absolute error, the last-value forecast's, and the observed load: a windowed WMAPE is the
  // ratio of two of their increases.
  double forecast_abs_error_total = 0;
  double last_value_abs_error_total = 0;
  double forecast_load_total = 0;
};

// One control interval, as the UI's trend charts plot it.
struct IntervalSnapshot {
  int64_t time_ms = 0;
  Epoch epoch = 0;
  std::vector<double> imbalance;   // per layer, max / mean GPU load
  std::vector<double> cross_node;  // per layer, estimated cross-node sends per token
};

// One layer's observed load in an interval beside what the forecaster predicted for that
// interval one interval before (empty before the forecaster had seen anything).
struct ForecastSample {
  int64_t time_ms = 0;
  std::vector<float> actual;    // per expert, tokens per step
  std::vector<float> forecast;  // per expert, or empty
};

class ControlPlane {
 public:
  virtual ~ControlPlane() = default;

  virtual PolicySettings Policy() = 0;
  // Records the change (who, old, new) in the history and applies it to the next interval.
  virtual Status SetPolicy(const PolicySettings& settings, const std::string& who) = 0;
  // Forces a decision now, ignoring the cool-down (not the byte budget).
  virtual Status RequestReplan(const std::string& who) = 0;
  // Migrates to an operator's placement (grace's placement JSON, `gracectl plan -o`) at once,
  // past the policy's thresholds: InvalidArgument naming what does not fit the configured model
  // and topology, FailedPrecondition while a migration runs or the loop is paused. Returns the
  // epoch the migration prepares.
  virtual StatusOr<Epoch> ApplyPlacement(const std::string& placement_json,
                                         const std::string& who) = 0;
  virtual void SetPaused(bool paused, const std::string& who) = 0;
  virtual std::vector<AgentStatus> Agents() = 0;
  virtual DaemonMetrics Metrics() = 0;
  // The newest `limit` intervals, oldest first (kept in memory: a bounded window).
  virtual std::vector<IntervalSnapshot> Trends(size_t limit) = 0;
  // The newest `limit` intervals of layer index `layer` (0-based), oldest first.
  virtual std::vector<ForecastSample> ForecastHistory(int layer, size_t limit) = 0;
  // Measured traffic per layer, rank loads included.
  virtual TrafficSnapshot Traffic() = 0;
  virtual void WithHistory(const std::function<void(HistoryStore&)>& fn) = 0;
};

}  // namespace grace
