#include "daemon/control_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "daemon/interval_coactivation.h"
#include "daemon/measured_traffic.h"
#include "daemon/migration_driver.h"
#include "daemon/policy_restore.h"
#include "daemon/starting_placement.h"
#include "migrate/migration_plan.h"
#include "policy/cost_model.h"
#include "policy/locality_routing.h"

namespace grace {
namespace {

CostParams CostParamsFor(const ServedModel& model) {
  CostParams p;
  p.hidden_size = model.hidden;
  p.expert_ffn_size = model.expert_ffn;
  return p;
}

// How the operator's policy maps onto the decider. Time-based knobs (cool-down) stay in the
// control loop; the decider's own cool-down is per layer and in steps.
DecisionOptions DecisionOptionsFor(const PolicySettings& policy, int steps_per_interval) {
  DecisionOptions d;
  d.horizon_steps = std::max(1, policy.horizon_intervals * std::max(1, steps_per_interval));
  d.min_net_gain_ms = policy.min_gain_ms;
  d.byte_budget = static_cast<uint64_t>(policy.byte_budget_mb * 1e6);
  d.fixed_cost_ms = policy.migration_fixed_cost_ms;
  d.max_replicas_per_expert = policy.max_replicas_per_expert;
  return d;
}

int ForcedModel(const std::string& name) {
  if (name == "ewma") return static_cast<int>(ForecastModel::kEwma);
  if (name == "holt") return static_cast<int>(ForecastModel::kHolt);
  if (name == "ar") return static_cast<int>(ForecastModel::kAr);
  if (name == "last_value") return static_cast<int>(ForecastModel::kLastValue);
  return -1;  // auto: per-series selection
}

std::vector<float> ToFloats(const std::vector<LayerStats>& stats) {
  std::vector<float> out;
  for (const LayerStats& s : stats) {
    for (double v : s.load) out.push_back(static_cast<float>(v));
  }
  return out;
}

}  // namespace

struct ControlLoop::Impl {
  Impl(DaemonConfig c, std::unique_ptr<HistoryStore> s, std::function<int64_t()> now)
      : config(std::move(c)),
        store(std::move(s)),
        now_ms(std::move(now)),
        params(CostParamsFor(config.model)),
        migration([this](const std::string& id,
                         const WireMessage& m) { return send ? send(id, m) : false; },
                  *store, config.topology,
                  EpochCoordinatorOptions{.ready_timeout_ms = config.ready_timeout_ms,
                                          .switch_timeout_ms = config.switch_timeout_ms}) {}

  int layers() const { return static_cast<int>(config.model.layer_ids.size()); }
  int experts() const { return config.model.num_experts; }
  const Topology& topology() const { return config.topology; }

  void MakeController() {
    if (planner == nullptr || planner->name() != policy.planner) {
      // The name was validated with the policy (daemon/policy_settings.h).
      StatusOr<std::unique_ptr<PlacementPolicy>> made = MakePlacementPolicy(policy.planner);
      if (made.ok()) planner = std::move(*made);
    }
    OnlineControllerOptions opt;
    opt.decision = DecisionOptionsFor(policy, steps_per_interval);
    opt.forecast.forced_model = ForcedModel(policy.forecast_model);
    controller =
        std::make_unique<OnlineController>(topology(), params, config.model.layer_ids, experts(),
                                           config.model.top_k, opt, planner.get());
  }

  // Routing of every layer for `load` ([layer][expert], empty: uniform).
  std::vector<LayerState> StatesFor(const Placement& p, const std::vector<float>& load) const {
    std::vector<LayerState> out(layers());
    for (int l = 0; l < layers(); ++l) {
      std::vector<double> layer_load(experts(), 1.0);
      if (load.size() == static_cast<size_t>(layers()) * experts()) {
        for (int e = 0; e < experts(); ++e) layer_load[e] = load[l * experts() + e];
      }
      out[l].row = p.physical_to_logical[l];
      out[l].routing = LocalityRouting(out[l].row, layer_load, topology());
    }
    return out;
  }

  Status Init() {
    GRACE_ASSIGN_OR_RETURN(RestoredPolicy restored, RestorePolicy(*store, policy, now_ms()));
    policy = restored.policy;
    paused = restored.paused;
    for (const std::string& line : restored.overrides) {
      spdlog::info("graced: policy from the history: {}", line);
    }
    if (paused) spdlog::warn("graced: paused, as before the restart (POST /api/v1/resume)");
    GRACE_ASSIGN_OR_RETURN(planner, MakePlacementPolicy(policy.planner));
    GRACE_ASSIGN_OR_RETURN(StartingPlacementResult start,
                           StartingPlacement(config, params, *store, now_ms()));
    epoch = start.record.epoch;
    placement = std::move(start.record.placement);
    spdlog::info("graced: epoch {} from {}", epoch, start.source);
    states = StatesFor(placement, expected_load);
    MakeController();
    next_interval_ms = now_ms() + static_cast<int64_t>(policy.interval_s * 1000);
    counts.assign(static_cast<size_t>(layers()) * experts(), 0.0);
    return Status::Ok();
  }

  // An agent serves a later epoch than the history holds: grace.db was lost or replaced. Its
  // epoch and placement become graced's (committed, so they survive a restart); planning from
  // the history's placement instead would send PREPAREs the agents refuse, for ever.
  Status AdoptAgentEpoch(const Hello& hello) {
    using Phase = EpochCoordinator::Phase;
    const Phase phase = migration.coordinator().phase();
    if (phase == Phase::kPreparing || phase == Phase::kReadyToCommit ||
        phase == Phase::kCommitted) {
      return FailedPrecondition("serves epoch " + std::to_string(hello.epoch) +
                                ", ahead of graced's " + std::to_string(epoch) +
                                ", while a migration runs; retry");
    }
    if (hello.placement_json.empty()) {
      return FailedPrecondition("serves epoch " + std::to_string(hello.epoch) + ", ahead of the " +
                                "history's " + std::to_string(epoch) +
                                ", and did not send its placement");
    }
    GRACE_ASSIGN_OR_RETURN(
        Placement p, CheckedPlacement(config, hello.placement_json, "agent " + hello.agent_id));
    PlacementRecord r;
    r.epoch = hello.epoch;
    r.committed_at_ms = now_ms();
    r.topology = topology();
    r.placement = p;
    GRACE_RETURN_IF_ERROR(store->CommitPlacement(r));
    spdlog::warn(
        "graced: agent {} serves epoch {}, ahead of the history's epoch {} (grace.db lost or "
        "replaced?); adopted its epoch and placement",
        hello.agent_id, hello.epoch, epoch);
    (void)store->RecordAgentEvent({now_ms(), hello.agent_id, "adopted",
                                   "epoch " + std::to_string(epoch) + " -> " +
                                       std::to_string(hello.epoch) + " from the agent"});
    epoch = hello.epoch;
    placement = std::move(p);
    states = StatesFor(placement, expected_load);
    return Status::Ok();
  }

  // --- Agent messages (I/O thread, under mu) ---------------------------------------------------
  void OnLoadReport(const std::string& agent, const LoadReport& r) {
    if (r.num_layers != static_cast<uint32_t>(layers()) ||
        r.num_experts != static_cast<uint32_t>(experts())) {
      spdlog::warn("graced: load report from {} has {} x {} counts, expected {} x {}; ignored",
                   agent, r.num_layers, r.num_experts, layers(), experts());
      return;
    }
    for (size_t i = 0; i < r.counts.size(); ++i) counts[i] += r.counts[i];
    // A refused section costs only itself: the counts above stand.
    if (!r.coactivation_error.empty()) {
      WarnRefused(agent, r.coactivation_error);
      ++metrics.coactivation_refused_total;
    }
    // Sampled on 1 token in sample_every: scaled back to the estimated count of every token.
    for (const LoadReport::CoactivationLayer& l : r.coactivation) {
      for (const LoadReport::Pair& p : l.pairs) {
        pairs.Add(static_cast<int>(l.layer_index), p.a, p.b,
                  static_cast<double>(p.count) * r.coactivation_sample_every);
      }
      metrics.coactivation_pairs_total += l.pairs.size();
      metrics.coactivation_sampled_mass_total += l.sampled_mass;
      metrics.coactivation_dropped_mass_total += l.dropped_mass;
    }
    Status traffic = r.traffic_error.empty() ? measured.Add(r) : DataLoss(r.traffic_error);
    if (!traffic.ok()) {
      WarnRefused(agent, traffic.message());
      ++metrics.traffic_refused_total;
    }
    uint64_t& steps = agent_steps[agent];
    steps += r.step_to > r.step_from ? r.step_to - r.step_from : 0;
    migration.OnStep(agent, r.step_to);
    newest_step = std::max(newest_step, r.step_to);
    ++metrics.load_reports_total;
  }

  // An agent that keeps sending a bad section is logged at its 1st, 2nd, 4th, 8th ... refusal,
  // not once a report; the metrics count every one.
  void WarnRefused(const std::string& agent, const std::string& reason) {
    const uint64_t n = ++refusals[agent];
    if ((n & (n - 1)) != 0) return;
    spdlog::warn("graced: load report from {}: {}; its counts are kept ({} refused so far)", agent,
                 reason, n);
  }

  // --- The control round ------------------------------------------------------------------
  // Tick runs on the control thread in three phases so that forecasting and deciding (the slow
  // part at DeepSeek scale) never hold `mu`, which the agent I/O thread and HTTP threads need:
  //   TakeInterval (under mu)  moves this interval's reports out of the shared state;
  //   Compute (no lock)        observes, evaluates and decides; it reads `states`, `controller`
  //                            and `realisations`, which only the control thread writes;
  //   ApplyInterval (under mu) records load, metrics, realised gains and starts a migration.
  struct IntervalInput {
    int64_t now = 0;
    uint64_t steps = 0;
    uint64_t newest_step = 0;
    std::vector<double> per_step;
    std::vector<CoactivationPair> pairs;
    PolicySettings policy;
    bool decide = false;
    bool forced = false;
  };
  struct IntervalOutput {
    std::vector<double> imbalance, cross_node;
    double forecast_wmape = 0, last_value_wmape = 0;
    std::optional<Decision> decision;
    std::vector<float> forecast_load;
    std::vector<float> predicted;  // the one-interval-ahead forecast made last interval
    // This interval's |forecast - load| and |last value - load| summed over experts, and its
    // load: the metrics' counters (0 before the forecaster had seen anything).
    double forecast_abs_error = 0, last_value_abs_error = 0, load = 0;
  };

  void Tick() {
    IntervalInput in;
    {
      std::lock_guard<std::mutex> lock(mu);
      const int64_t now = now_ms();
      AdvanceMigration(now);
      if (now < next_interval_ms) return;
      next_interval_ms = now + static_cast<int64_t>(policy.interval_s * 1000);
      if (!TakeInterval(now, &in)) return;
    }
    const auto started = std::chrono::steady_clock::now();
    IntervalOutput out = Compute(in);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    std::lock_guard<std::mutex> lock(mu);
    metrics.control_round_ms = ms;
    metrics.control_round_max_ms = std::max(metrics.control_round_max_ms, ms);
    metrics.control_round_seconds.Observe(ms / 1000);
    ApplyInterval(in, std::move(out));
  }

  // Returns false when there was nothing to observe.
  bool TakeInterval(int64_t now, IntervalInput* in) {
    uint64_t steps = 0;
    for (const auto& [agent, s] : agent_steps) steps = std::max(steps, s);
    agent_steps.clear();
    measured.CloseWindow();
    if (steps == 0) return false;  // no reports this interval
    steps_per_interval = static_cast<int>(steps);
    in->now = now;
    in->steps = steps;
    in->newest_step = newest_step;
    in->per_step.resize(counts.size());
    for (size_t i = 0; i < counts.size(); ++i)
      in->per_step[i] = counts[i] / static_cast<double>(steps);
    std::fill(counts.begin(), counts.end(), 0.0);
    in->pairs = pairs.Take();
    if (rebuild_controller) {
      MakeController();
      rebuild_controller = false;
    }
    in->policy = policy;
    in->forced = replan_requested;
    in->decide =
        !paused && migration.idle() &&
        (in->forced || now - last_migration_ms >= static_cast<int64_t>(policy.cooldown_s * 1000));
    if (in->decide) replan_requested = false;
    return true;
  }

  IntervalOutput Compute(const IntervalInput& in) {
    IntervalOutput out;
    if (controller->intervals() > 0) {
      const Eigen::ArrayXd& next = controller->forecaster().NextForecast();
      out.predicted.assign(next.data(), next.data() + next.size());
      const Eigen::ArrayXd& last = controller->forecaster().LastObserved();
      const Eigen::Map<const Eigen::ArrayXd> observed(
          in.per_step.data(), static_cast<Eigen::Index>(in.per_step.size()));
      if (next.size() == observed.size() && last.size() == observed.size()) {
        out.forecast_abs_error = (next - observed).abs().sum();
        out.last_value_abs_error = (last - observed).abs().sum();
        out.load = observed.sum();
      }
    }
    // EPLB is the load-only baseline: with it the controller sees no co-activation, so none of
    // the decider's candidates group by it either.
    const bool load_only = in.policy.planner == "eplb";
    controller->Observe(in.per_step, load_only ? std::span<const CoactivationPair>() : in.pairs,
                        nullptr, static_cast<int64_t>(in.newest_step));
    out.imbalance.assign(layers(), 1.0);
    out.cross_node.assign(layers(), 0.0);
    for (int l = 0; l < layers(); ++l) {
      const LayerCost c =
          EvaluateLayer(ObservedStats(in.per_step, l), states[l].routing, topology(), params);
      out.imbalance[l] = c.imbalance;
      out.cross_node[l] = c.cross_node_sends_per_token;
    }
    out.forecast_wmape = controller->forecast_wmape();
    out.last_value_wmape = controller->last_value_wmape();
    for (Realisation& r : migration.realisations()) {
      for (size_t i = 0; i < r.layers.size(); ++i) {
        const LayerStats st = ObservedStats(in.per_step, r.layers[i]);
        const double before = EvaluateLayer(st, r.before[i].routing, topology(), params).layer_ms;
        const double after =
            EvaluateLayer(st, states[r.layers[i]].routing, topology(), params).layer_ms;
        r.gain_ms += (before - after) * static_cast<double>(in.steps);
      }
      --r.intervals_left;
    }
    if (in.decide) {
      controller->SetDecisionOptions(DecisionOptionsFor(in.policy, steps_per_interval));
      out.decision = controller->Decide(static_cast<int64_t>(in.newest_step), states);
      if (!out.decision->changed_layers.empty())
        out.forecast_load = ToFloats(controller->ForecastStats());
    }
    return out;
  }

  void ApplyInterval(const IntervalInput& in, IntervalOutput out) {
    for (int l = 0; l < layers(); ++l) {
      std::vector<float> row(in.per_step.begin() + l * experts(),
                             in.per_step.begin() + (l + 1) * experts());
      Status s = store->RecordLoad(in.now, l, row);
      if (!s.ok()) spdlog::warn("graced: {}", s.message());
    }
    trends.push_back({in.now, epoch, out.imbalance, out.cross_node});
    if (trends.size() > kTrendWindow) trends.pop_front();
    forecasts.push_back({in.now, std::vector<float>(in.per_step.begin(), in.per_step.end()),
                         std::move(out.predicted)});
    if (forecasts.size() > kForecastWindow) forecasts.pop_front();
    metrics.layer_imbalance = std::move(out.imbalance);
    metrics.layer_cross_node_sends = std::move(out.cross_node);
    metrics.forecast_mape = out.forecast_wmape;
    metrics.last_value_mape = out.last_value_wmape;
    metrics.forecast_abs_error_total += out.forecast_abs_error;
    metrics.last_value_abs_error_total += out.last_value_abs_error;
    metrics.forecast_load_total += out.load;
    for (const Realisation& r : migration.realisations()) {
      if (r.intervals_left > 0) continue;
      for (int64_t id : r.decision_ids) {
        Status s = store->SetRealisedGain(id, r.gain_ms);
        if (!s.ok()) spdlog::warn("graced: {}", s.message());
      }
    }
    std::erase_if(migration.realisations(),
                  [](const Realisation& r) { return r.intervals_left <= 0; });
    if (in.now - last_compact_ms > 60'000) {
      (void)store->Compact(in.now);
      last_compact_ms = in.now;
    }
    if (out.decision)
      StartMigration(in.now, in.forced, *out.decision, std::move(out.forecast_load));
  }

  LayerStats ObservedStats(const std::vector<double>& per_step, int l) const {
    LayerStats st;
    st.layer_id = config.model.layer_ids[l];
    st.top_k = config.model.top_k;
    st.load.assign(per_step.begin() + l * experts(), per_step.begin() + (l + 1) * experts());
    return st;
  }

  void StartMigration(int64_t now, bool forced, const Decision& decision,
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
    MigrationTarget target{next,
                           next_states,
                           std::move(forecast_load),
                           ids,
                           decision.changed_layers,
                           plan->total_bytes};
    (void)BeginMigration(now, std::move(target), *plan);
  }

  // Sends PREPARE of the next epoch for `target` to every agent that is up.
  StatusOr<Epoch> BeginMigration(int64_t now, MigrationTarget target, const MigrationPlan& plan) {
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

  // An operator's placement (POST /api/v1/placement), past the policy's thresholds.
  StatusOr<Epoch> ApplyPlacement(const std::string& json, const std::string& who) {
    if (!migration.idle()) {
      return FailedPrecondition("a migration to epoch " +
                                std::to_string(migration.coordinator().epoch()) +
                                " is in progress");
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

  std::string ReplicaCapViolation(const Placement& p) const {
    for (int l = 0; l < p.num_layers(); ++l) {
      std::vector<int> n = p.ReplicaCounts(l);
      for (int e = 0; e < experts(); ++e) {
        if (n[e] > policy.max_replicas_per_expert) {
          return "layer " + std::to_string(p.layer_ids[l]) + " expert " + std::to_string(e) +
                 " would have " + std::to_string(n[e]) +
                 " replicas, over max_replicas_per_expert " +
                 std::to_string(policy.max_replicas_per_expert);
        }
      }
    }
    return "";
  }

  void RecordNone(int64_t now, const std::string& reason) {
    StoredDecision s;
    s.time_ms = now;
    s.action = "none";
    s.reason = reason;
    (void)store->RecordDecision(s);
    ++metrics.decisions_total;
  }

  void AdvanceMigration(int64_t now) {
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

  DaemonConfig config;
  std::unique_ptr<HistoryStore> store;
  std::function<int64_t()> now_ms;
  CostParams params;
  std::function<bool(const std::string&, const WireMessage&)> send;
  std::function<std::vector<AgentStatus>()> agents;

  std::mutex mu;
  PolicySettings policy;
  bool paused = false;
  bool replan_requested = false;
  bool rebuild_controller = false;
  Epoch epoch = 0;
  // The agents taking part in the current (or last) migration: only they may answer it.
  std::set<std::string> migration_agents;
  uint64_t refused_answers = 0;  // READY/SWITCHED/ABORT from agents not in it
  Placement placement;
  Epoch welcome_epoch = 0;             // the epoch welcome_placement_json was written for
  std::string welcome_placement_json;  // PlacementToJson(placement), for Welcome
  std::vector<LayerState> states;
  std::vector<float> expected_load;  // behind the routing of `states`; empty: uniform

  std::unique_ptr<PlacementPolicy> planner;
  std::unique_ptr<OnlineController> controller;
  MigrationDriver migration;

  std::vector<double> counts;  // this interval, [layer][expert]
  IntervalCoactivation pairs;  // this interval's, summed per pair
  MeasuredTrafficTotals measured{layers(), topology().ranks(), topology().slots_per_gpu};
  std::map<std::string, uint64_t> agent_steps;  // steps each agent reported this interval
  std::map<std::string, uint64_t> refusals;     // sections refused per agent, for the log
  std::set<std::string> left;                   // said Goodbye; their close is not a loss
  uint64_t newest_step = 0;
  int steps_per_interval = 1;
  int64_t next_interval_ms = 0;
  int64_t last_migration_ms = INT64_MIN / 2;
  int64_t last_compact_ms = 0;
  DaemonMetrics metrics;

  // The UI's recent windows, in memory: the store keeps the long history.
  static constexpr size_t kTrendWindow = 720;     // 12 minutes at 1 s intervals
  static constexpr size_t kForecastWindow = 120;  // every layer's load and forecast
  struct ForecastRecord {
    int64_t time_ms = 0;
    std::vector<float> actual, predicted;  // [layer][expert]; predicted may be empty
  };
  std::deque<IntervalSnapshot> trends;
  std::deque<ForecastRecord> forecasts;
};

ControlLoop::ControlLoop(DaemonConfig config, std::unique_ptr<HistoryStore> store,
                         std::function<int64_t()> now_ms)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(store), std::move(now_ms))) {
  impl_->policy = impl_->config.policy;
}

ControlLoop::~ControlLoop() = default;

Status ControlLoop::Init() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->Init();
}

void ControlLoop::SetSender(std::function<bool(const std::string&, const WireMessage&)> send,
                            std::function<std::vector<AgentStatus>()> agents) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->send = std::move(send);
  impl_->agents = std::move(agents);
}

void ControlLoop::Tick() {
  impl_->Tick();
}  // locks in phases itself

Epoch ControlLoop::epoch() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->epoch;
}

Placement ControlLoop::placement() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->placement;
}

PolicySettings ControlLoop::Policy() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->policy;
}

Status ControlLoop::SetPolicy(const PolicySettings& settings, const std::string& who) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const nlohmann::json before = impl_->policy.ToJson();
  const nlohmann::json after = settings.ToJson();
  const int64_t now = impl_->now_ms();
  for (const auto& [field, value] : after.items()) {
    if (before[field] != value) {
      GRACE_RETURN_IF_ERROR(
          impl_->store->RecordPolicyChange({now, who, field, before[field].dump(), value.dump()}));
    }
  }
  const bool model_changed = settings.forecast_model != impl_->policy.forecast_model ||
                             settings.planner != impl_->policy.planner;
  // A shorter interval takes effect at once: the next tick is no later than one new interval.
  impl_->next_interval_ms =
      std::min(impl_->next_interval_ms, now + static_cast<int64_t>(settings.interval_s * 1000));
  impl_->policy = settings;
  // A pinned model starts a fresh forecaster, another planner a fresh controller; the control
  // thread rebuilds it (it owns it).
  if (model_changed) impl_->rebuild_controller = true;
  return Status::Ok();
}

Status ControlLoop::RequestReplan(const std::string& who) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->migration.idle()) {
    return FailedPrecondition("a migration to epoch " +
                              std::to_string(impl_->migration.coordinator().epoch()) +
                              " is in progress");
  }
  impl_->replan_requested = true;
  impl_->next_interval_ms = impl_->now_ms();  // decide at the next tick
  (void)impl_->store->RecordAgentEvent({impl_->now_ms(), who, "replan_requested", ""});
  return Status::Ok();
}

StatusOr<Epoch> ControlLoop::ApplyPlacement(const std::string& placement_json,
                                            const std::string& who) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->ApplyPlacement(placement_json, who);
}

void ControlLoop::SetPaused(bool paused, const std::string& who) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (paused && impl_->migration.coordinator().phase() == EpochCoordinator::Phase::kPreparing) {
    impl_->migration.Abort("paused by " + who);
  }
  impl_->paused = paused;
  (void)impl_->store->RecordPolicyChange(
      {impl_->now_ms(), who, "paused", paused ? "false" : "true", paused ? "true" : "false"});
}

std::vector<AgentStatus> ControlLoop::Agents() {
  std::function<std::vector<AgentStatus>()> agents;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    agents = impl_->agents;
  }
  return agents ? agents() : std::vector<AgentStatus>{};
}

DaemonMetrics ControlLoop::Metrics() {
  std::vector<AgentStatus> list = Agents();
  std::lock_guard<std::mutex> lock(impl_->mu);
  DaemonMetrics m = impl_->metrics;
  m.epoch = impl_->epoch;
  m.paused = impl_->paused;
  m.layer_ids = impl_->config.model.layer_ids;
  m.measured_total = impl_->measured.Total(false);
  m.measured_window = impl_->measured.Window(false);
  for (const AgentStatus& a : list) {
    (a.state == "up" ? m.agents_up : a.state == "left" ? m.agents_left : m.agents_lost) += 1;
  }
  impl_->migration.FillGauges(impl_->now_ms(), &m);
  return m;
}

TrafficSnapshot ControlLoop::Traffic() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TrafficSnapshot t;
  t.epoch = impl_->epoch;
  t.layer_ids = impl_->config.model.layer_ids;
  t.total = impl_->measured.Total(true);
  t.window = impl_->measured.Window(true);
  return t;
}

std::vector<IntervalSnapshot> ControlLoop::Trends(size_t limit) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const size_t n = std::min(limit, impl_->trends.size());
  return {impl_->trends.end() - static_cast<std::ptrdiff_t>(n), impl_->trends.end()};
}

std::vector<ForecastSample> ControlLoop::ForecastHistory(int layer, size_t limit) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<ForecastSample> out;
  if (layer < 0 || layer >= impl_->layers()) return out;
  const size_t experts = static_cast<size_t>(impl_->experts());
  const size_t n = std::min(limit, impl_->forecasts.size());
  const size_t first = static_cast<size_t>(layer) * experts;
  auto slice = [&](const std::vector<float>& all) {
    if (all.size() < first + experts) return std::vector<float>{};
    return std::vector<float>(all.begin() + first, all.begin() + first + experts);
  };
  for (auto it = impl_->forecasts.end() - static_cast<std::ptrdiff_t>(n);
       it != impl_->forecasts.end(); ++it) {
    out.push_back({it->time_ms, slice(it->actual), slice(it->predicted)});
  }
  return out;
}

void ControlLoop::WithHistory(const std::function<void(HistoryStore&)>& fn) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  fn(*impl_->store);
}

StatusOr<Welcome> ControlLoop::OnAgentJoined(const Hello& hello) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const Topology& t = impl_->topology();
  if (hello.slots_per_rank != t.slots_per_gpu) {
    return InvalidArgument("agent has " + std::to_string(hello.slots_per_rank) +
                           " slots per rank, the topology " + std::to_string(t.slots_per_gpu));
  }
  for (RankId r : hello.ranks) {
    if (r < 0 || r >= t.ranks() || t.NodeOfRank(r) != hello.node) {
      return InvalidArgument("rank " + std::to_string(r) + " is not on node " +
                             std::to_string(hello.node) + " of " + t.ToString());
    }
  }
  if (hello.epoch > impl_->epoch) {
    GRACE_RETURN_IF_ERROR(impl_->AdoptAgentEpoch(hello));
  }
  impl_->migration.OnAgentJoined(hello.agent_id, hello.ranks, hello.spare_slots);
  (void)impl_->store->RecordAgentEvent(
      {impl_->now_ms(), hello.agent_id, hello.epoch == impl_->epoch ? "joined" : "joined_resync",
       "epoch " + std::to_string(hello.epoch) + " -> " + std::to_string(impl_->epoch)});
  Welcome w;
  w.epoch = impl_->epoch;
  // One epoch's placement is written once, not once per joining agent: at 10,000 ranks it is
  // megabytes, and a restart of graced has every agent join within seconds.
  if (impl_->welcome_epoch != impl_->epoch) {
    impl_->welcome_placement_json = PlacementToJson(impl_->placement, t);
    impl_->welcome_epoch = impl_->epoch;
  }
  w.placement_json = impl_->welcome_placement_json;
  w.expected_load = impl_->expected_load;
  return w;
}

void ControlLoop::OnAgentLost(const std::string& agent_id, const std::string& reason) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->left.erase(agent_id) != 0) return;  // it said Goodbye: recorded as left
  impl_->migration.OnAgentLost(agent_id);
  impl_->agent_steps.erase(agent_id);
  (void)impl_->store->RecordAgentEvent({impl_->now_ms(), agent_id, "lost", reason});
}

void ControlLoop::OnMessage(const std::string& agent_id, const WireMessage& message) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const bool answers_migration = std::holds_alternative<Ready>(message) ||
                                 std::holds_alternative<Switched>(message) ||
                                 std::holds_alternative<Abort>(message);
  if (answers_migration && impl_->migration_agents.count(agent_id) == 0) {
    ++impl_->metrics.frames_refused_total[static_cast<int>(FrameRefusal::kNotInMigration)];
    if (impl_->refused_answers++ % 100 == 0) {
      spdlog::warn("graced: {} from agent {}, which is not in the migration; refused ({} so far)",
                   MessageTypeName(TypeOf(message)), agent_id, impl_->refused_answers);
    }
    return;
  }
  if (const LoadReport* r = std::get_if<LoadReport>(&message)) {
    impl_->OnLoadReport(agent_id, *r);
  } else if (const Heartbeat* h = std::get_if<Heartbeat>(&message)) {
    impl_->migration.OnStep(agent_id, h->step);
    impl_->newest_step = std::max(impl_->newest_step, h->step);
  } else if (const Ready* r = std::get_if<Ready>(&message)) {
    impl_->migration.OnReady(agent_id, r->epoch);
  } else if (const Switched* s = std::get_if<Switched>(&message)) {
    impl_->migration.OnSwitched(agent_id, s->epoch, s->step);
  } else if (const Goodbye* g = std::get_if<Goodbye>(&message)) {
    // Leaving on purpose: for the migration it is gone, for the history it left, not lost.
    impl_->migration.OnAgentLost(agent_id);
    impl_->agent_steps.erase(agent_id);
    impl_->left.insert(agent_id);
    (void)impl_->store->RecordAgentEvent(
        {impl_->now_ms(), agent_id, "left", "before step " + std::to_string(g->step)});
  } else if (const Abort* a = std::get_if<Abort>(&message)) {
    // An agent that cannot stage its copies (out of memory, a failed transfer, weights that
    // failed their digest) aborts.
    if (a->cause == AbortCause::kWeightIntegrity) {
      // Logged here, once per report: the migration's abort line names whichever ABORT came
      // first, and the peers of a failed rank see its mesh close at the same moment.
      spdlog::error(
          "graced: agent {} received expert weights that failed their digest; the "
          "migration to epoch {} aborts: {}",
          agent_id, a->epoch, a->reason);
      ++impl_->metrics.migration_integrity_failures_total;
    }
    impl_->migration.OnAgentAbort(agent_id, a->epoch, a->reason);
  }
}

void ControlLoop::OnConnectionRejected(const std::string& peer, const std::string& reason) {
  spdlog::warn("graced: connection from {} closed: {}", peer, reason);
  std::lock_guard<std::mutex> lock(impl_->mu);
  (void)impl_->store->RecordAgentEvent({impl_->now_ms(), peer, "refused", reason});
}

void ControlLoop::OnFrameRefused(const std::string&, FrameRefusal why) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ++impl_->metrics.frames_refused_total[static_cast<int>(why)];
}

}  // namespace grace
