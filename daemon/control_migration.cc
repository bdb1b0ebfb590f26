// ControlLoop's migrations: a decision or an operator's placement becomes a migration to the
// next epoch (PREPARE to every agent that is up), and Tick advances it to its commit
// (daemon/control_loop_state.h, daemon/migration_driver.h).
#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

#include "daemon/control_loop_state.h"
#include "daemon/starting_placement.h"

namespace grace {

void ControlLoop::Impl::StartMigration(int64_t now, bool forced, const Decision& decision,
                                       std::vector<float> forecast_load) {
  if (!migration.idle()) return;  // paused meanwhile
  if (decision.changed_layers.empty()) {
    if (forced) RecordNone(now, "replan requested: no candidate cleared the policy's thresholds");
    return;
  }
  Placement next = placement;
  std::vector<LayerState> next_states = states;
  for (size_t i = 0; i < decision.changed_layers.size(); ++i) {
    const int l = decision.changed_layers[i];
    next.physical_to_logical[l] = decision.new_states[i].row;
    next_states[l] = decision.new_states[i];
  }
  if (std::string why = ReplicaCapViolation(next); !why.empty()) {
    RecordNone(now, "decision skipped: " + why);
    return;
  }
  StatusOr<MigrationPlan> plan =
      PlanMigration(topology(), placement, next, ExpertWeightBytes(params));
  if (!plan.ok()) {
    RecordNone(now, "decision skipped: " + plan.status().message());
    return;
  }
  std::vector<int64_t> ids;
  for (const DecisionRecord& d : decision.records) {
    StoredDecision s;
    s.time_ms = now;
    s.action = ActionKindName(d.kind);
    s.layer_index = d.layer_index;
    s.reason = (forced ? "[forced] " : "") + d.reason;
    s.predicted_gain_ms = d.predicted_gain_ms - d.migration_ms;
    s.bytes = d.bytes;
    StatusOr<int64_t> id = store->RecordDecision(s);
    if (id.ok()) ids.push_back(*id);
    ++metrics.decisions_total;
  }
  MigrationTarget target{
      next, next_states, std::move(forecast_load), ids, decision.changed_layers, plan->total_bytes};
  (void)BeginMigration(now, std::move(target), *plan);
}

StatusOr<Epoch> ControlLoop::Impl::BeginMigration(int64_t now, MigrationTarget target,
                                                  const MigrationPlan& plan) {
  std::vector<std::string> participants;
  for (const AgentStatus& a : agents ? agents() : std::vector<AgentStatus>{}) {
    if (a.state == "up") participants.push_back(a.agent_id);
  }
  const Epoch next_epoch = migration.coordinator().next_epoch(epoch);
  Status s = migration.Begin(next_epoch, std::move(target), plan, participants, now, &placement);
  migration_agents = std::set<std::string>(participants.begin(), participants.end());
  if (!s.ok()) {
    spdlog::warn("graced: migration to epoch {} not started: {}", next_epoch, s.message());
    return s;
  }
  return next_epoch;
}

StatusOr<Epoch> ControlLoop::Impl::ApplyPlacement(const std::string& json, const std::string& who) {
  if (!migration.idle()) {
    return FailedPrecondition("a migration to epoch " +
                              std::to_string(migration.coordinator().epoch()) + " is in progress");
  }
  if (paused) return FailedPrecondition("the control loop is paused (POST /api/v1/resume)");
  GRACE_ASSIGN_OR_RETURN(Placement next, CheckedPlacement(config, json, "placement"));
  if (std::string why = ReplicaCapViolation(next); !why.empty()) {
    return InvalidArgument("placement: " + why);
  }
  std::vector<int> changed;
  for (int l = 0; l < layers(); ++l) {
    if (next.physical_to_logical[l] != placement.physical_to_logical[l]) changed.push_back(l);
  }
  if (changed.empty()) {
    return InvalidArgument("placement: equal to the placement of epoch " + std::to_string(epoch) +
                           ", nothing to migrate");
  }
  GRACE_ASSIGN_OR_RETURN(MigrationPlan plan,
                         PlanMigration(topology(), placement, next, ExpertWeightBytes(params)));
  const int64_t now = now_ms();
  StoredDecision d;
  d.time_ms = now;
  d.action = "apply";
  d.reason = "placement applied by " + who + " (" + std::to_string(changed.size()) +
             " layers change, " + std::to_string(plan.total_bytes) + " bytes)";
  d.bytes = plan.total_bytes;
  std::vector<int64_t> ids;
  StatusOr<int64_t> id = store->RecordDecision(d);
  if (id.ok()) ids.push_back(*id);
  ++metrics.decisions_total;
  std::vector<LayerState> next_states = StatesFor(next, expected_load);
  MigrationTarget target{std::move(next),    std::move(next_states), expected_load, ids,
                         std::move(changed), plan.total_bytes};
  return BeginMigration(now, std::move(target), plan);
}

std::string ControlLoop::Impl::ReplicaCapViolation(const Placement& p) const {
  for (int l = 0; l < p.num_layers(); ++l) {
    std::vector<int> n = p.ReplicaCounts(l);
    for (int e = 0; e < experts(); ++e) {
      if (n[e] > policy.max_replicas_per_expert) {
        return "layer " + std::to_string(p.layer_ids[l]) + " expert " + std::to_string(e) +
               " would have " + std::to_string(n[e]) + " replicas, over max_replicas_per_expert " +
               std::to_string(policy.max_replicas_per_expert);
      }
    }
  }
  return "";
}

void ControlLoop::Impl::RecordNone(int64_t now, const std::string& reason) {
  StoredDecision s;
  s.time_ms = now;
  s.action = "none";
  s.reason = reason;
  (void)store->RecordDecision(s);
  ++metrics.decisions_total;
}

void ControlLoop::Impl::AdvanceMigration(int64_t now) {
  // COMMIT must reach every agent before step s. An agent may be a heartbeat period ahead
  // of its last report, and the message takes a round trip: size the margin at the
  // observed step rate, twice over, and never under 8 steps.
  const double steps_per_s = steps_per_interval / std::max(1e-3, policy.interval_s);
  const double lead_s = (config.heartbeat_ms + 250.0) / 1000.0;
  const uint64_t margin =
      std::max<uint64_t>(8, static_cast<uint64_t>(std::ceil(2 * steps_per_s * lead_s)));
  std::optional<MigrationTarget> committed =
      migration.Advance(now, margin, states, policy.horizon_intervals, &metrics);
  if (!committed) return;
  epoch = migration.coordinator().epoch();
  placement = std::move(committed->placement);
  states = std::move(committed->states);
  expected_load = std::move(committed->expected_load);
  last_migration_ms = now;
}

}  // namespace grace
