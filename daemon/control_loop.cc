// ControlLoop: its start-up and restore, the agents' messages and the ControlPlane calls; the
// state is daemon/control_loop_state.h's, the interval round control_round.cc's, migrations
// control_migration.cc's.
#include "daemon/control_loop.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "daemon/control_loop_state.h"
#include "daemon/policy_restore.h"
#include "daemon/starting_placement.h"
#include "policy/locality_routing.h"

namespace grace {
namespace {

CostParams CostParamsFor(const ServedModel& model) {
  CostParams p;
  p.hidden_size = model.hidden;
  p.expert_ffn_size = model.expert_ffn;
  return p;
}

int ForcedModel(const std::string& name) {
  if (name == "ewma") return static_cast<int>(ForecastModel::kEwma);
  if (name == "holt") return static_cast<int>(ForecastModel::kHolt);
  if (name == "ar") return static_cast<int>(ForecastModel::kAr);
  if (name == "last_value") return static_cast<int>(ForecastModel::kLastValue);
  return -1;  // auto: per-series selection
}

}  // namespace

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

ControlLoop::Impl::Impl(DaemonConfig c, std::unique_ptr<HistoryStore> s,
                        std::function<int64_t()> now)
    : config(std::move(c)),
      store(std::move(s)),
      now_ms(std::move(now)),
      params(CostParamsFor(config.model)),
      migration([this](const std::string& id,
                       const WireMessage& m) { return send ? send(id, m) : false; },
                *store, config.topology,
                EpochCoordinatorOptions{.ready_timeout_ms = config.ready_timeout_ms,
                                        .switch_timeout_ms = config.switch_timeout_ms}) {}

void ControlLoop::Impl::MakeController() {
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

std::vector<LayerState> ControlLoop::Impl::StatesFor(const Placement& p,
                                                     const std::vector<float>& load) const {
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

Status ControlLoop::Impl::Init() {
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

Status ControlLoop::Impl::AdoptAgentEpoch(const Hello& hello) {
  using Phase = EpochCoordinator::Phase;
  const Phase phase = migration.coordinator().phase();
  if (phase == Phase::kPreparing || phase == Phase::kReadyToCommit || phase == Phase::kCommitted) {
    return FailedPrecondition("serves epoch " + std::to_string(hello.epoch) +
                              ", ahead of graced's " + std::to_string(epoch) +
                              ", while a migration runs; retry");
  }
  if (hello.placement_json.empty()) {
    return FailedPrecondition("serves epoch " + std::to_string(hello.epoch) + ", ahead of the " +
                              "history's " + std::to_string(epoch) +
                              ", and did not send its placement");
  }
  GRACE_ASSIGN_OR_RETURN(Placement p,
                         CheckedPlacement(config, hello.placement_json, "agent " + hello.agent_id));
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

void ControlLoop::Impl::OnLoadReport(const std::string& agent, const LoadReport& r) {
  if (r.num_layers != static_cast<uint32_t>(layers()) ||
      r.num_experts != static_cast<uint32_t>(experts())) {
    spdlog::warn("graced: load report from {} has {} x {} counts, expected {} x {}; ignored", agent,
                 r.num_layers, r.num_experts, layers(), experts());
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

void ControlLoop::Impl::WarnRefused(const std::string& agent, const std::string& reason) {
  const uint64_t n = ++refusals[agent];
  if ((n & (n - 1)) != 0) return;
  spdlog::warn("graced: load report from {}: {}; its counts are kept ({} refused so far)", agent,
               reason, n);
}

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
