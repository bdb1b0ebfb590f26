#include "daemon/migration_driver.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "migrate/migration_rounds.h"
#include "policy/locality_routing.h"

namespace grace {

MigrationDriver::MigrationDriver(EpochCoordinator::SendFn send, HistoryStore& store,
                                 const Topology& topology, EpochCoordinatorOptions options)
    : store_(store), topology_(topology), coordinator_(std::move(send), options) {}

void MigrationDriver::OnAgentJoined(const std::string& agent, const std::vector<RankId>& ranks,
                                    std::optional<int32_t> spare_slots) {
  coordinator_.OnAgentJoined(agent);
  for (RankId r : ranks) spare_by_rank_[r] = spare_slots.value_or(-1);
}

std::vector<int> MigrationDriver::SparePerRank() const {
  std::vector<int> spare(topology_.ranks(), -1);
  for (const auto& [r, n] : spare_by_rank_) {
    if (r >= 0 && r < topology_.ranks()) spare[r] = n;
  }
  return spare;
}

Status MigrationDriver::Begin(Epoch epoch, MigrationTarget target, const MigrationPlan& plan,
                              const std::vector<std::string>& participants, int64_t now_ms,
                              const Placement* from) {
  rounds_.reset();
  if (from != nullptr && !plan.transfers.empty()) {
    MigrationRounds split = PlanMigrationRounds(topology_, *from, target.placement, SparePerRank());
    if (split.fell_back) {
      spdlog::warn(
          "graced: migration to epoch {}: no split into rounds keeps every expert served within "
          "the agents' spare slots; running the rest in one round (an agent short of spare "
          "slots refuses it; raise [migration].spare_slots)",
          epoch);
    }
    if (split.rounds.size() > 1) {
      spdlog::info(
          "graced: migration to epoch {} runs in {} rounds: some rank needs more new experts in a "
          "layer than its spare slots",
          epoch, split.rounds.size());
      rounds_ = Rounds{std::move(split.rounds),      0, std::move(target), participants,
                       plan.transfers.front().bytes, {}};
      return BeginRound(epoch, *from, now_ms);
    }
  }
  pending_ = std::move(target);
  return coordinator_.Begin(epoch, pending_->placement, topology_, plan, participants, now_ms,
                            pending_->expected_load);
}

Status MigrationDriver::BeginRound(Epoch epoch, const Placement& from, int64_t now_ms) {
  Rounds& r = *rounds_;
  const Placement& to = r.placements[r.next];
  GRACE_ASSIGN_OR_RETURN(MigrationPlan plan,
                         PlanMigration(topology_, from, to, r.bytes_per_expert));
  MigrationTarget round = r.target;
  round.placement = to;
  round.bytes = plan.total_bytes;
  if (r.next + 1 < r.placements.size()) round.states = RoundStates(to);
  pending_ = std::move(round);
  spdlog::info("graced: migration round {} of {} to epoch {}: {} copies", r.next + 1,
               r.placements.size(), epoch, plan.transfers.size());
  return coordinator_.Begin(epoch, pending_->placement, topology_, plan, r.participants, now_ms,
                            pending_->expected_load);
}

std::vector<LayerState> MigrationDriver::RoundStates(const Placement& p) const {
  const MigrationTarget& t = rounds_->target;
  std::vector<LayerState> states = t.states;
  const int experts = p.num_experts;
  std::vector<double> load(experts, 1.0);
  for (int l = 0; l < p.num_layers() && l < static_cast<int>(states.size()); ++l) {
    if (p.physical_to_logical[l] == t.placement.physical_to_logical[l]) continue;
    for (int e = 0; e < experts && !t.expected_load.empty(); ++e) {
      load[e] = t.expected_load[static_cast<size_t>(l) * experts + e];
    }
    states[l].row = p.physical_to_logical[l];
    states[l].routing = LocalityRouting(states[l].row, load, topology_);
  }
  return states;
}

void MigrationDriver::OnAgentAbort(const std::string& agent, Epoch epoch,
                                   const std::string& reason) {
  if (epoch == coordinator_.epoch()) coordinator_.Abort("agent " + agent + ": " + reason);
}

std::optional<MigrationTarget> MigrationDriver::Advance(int64_t now_ms,
                                                        uint64_t switch_margin_steps,
                                                        const std::vector<LayerState>& before,
                                                        int horizon, DaemonMetrics* metrics) {
  switch (coordinator_.Poll(now_ms)) {
    case EpochCoordinator::Phase::kReadyToCommit: {
      // Persist first: once COMMIT is out, the epoch must survive a crash of graced.
      PlacementRecord r;
      r.epoch = coordinator_.epoch();
      r.committed_at_ms = now_ms;
      r.decision_id = pending_->decision_ids.empty() ? 0 : pending_->decision_ids.front();
      r.topology = topology_;
      r.placement = pending_->placement;
      if (Status s = store_.CommitPlacement(r); !s.ok()) {
        coordinator_.Abort("cannot persist epoch " + std::to_string(r.epoch) + ": " + s.message());
        return std::nullopt;
      }
      coordinator_.set_switch_margin_steps(switch_margin_steps);
      if (!coordinator_.Commit(now_ms).ok()) return std::nullopt;
      ++metrics->migrations_total;
      metrics->migration_bytes_total += pending_->bytes;
      if (rounds_) {
        StoredDecision d;
        d.time_ms = now_ms;
        d.action = "migration_round";
        d.reason = "round " + std::to_string(rounds_->next + 1) + " of " +
                   std::to_string(rounds_->placements.size()) +
                   " (too few spare slots for one): epoch " + std::to_string(r.epoch);
        d.bytes = pending_->bytes;
        d.epoch = r.epoch;
        (void)store_.RecordDecision(d);
        if (rounds_->next == 0) rounds_->before = before;
        rounds_->committed = r.epoch;
        spdlog::info("graced: epoch {} committed (round {} of {}), switch at step {}", r.epoch,
                     rounds_->next + 1, rounds_->placements.size(), coordinator_.switch_step());
        if (rounds_->next + 1 < rounds_->placements.size()) return pending_;
      }
      Realisation real;
      real.decision_ids = pending_->decision_ids;
      real.layers = pending_->layers;
      const std::vector<LayerState>& in_force = rounds_ ? rounds_->before : before;
      for (int l : pending_->layers) real.before.push_back(in_force[l]);
      real.intervals_left = std::max(1, horizon);
      realisations_.push_back(std::move(real));
      for (int64_t id : pending_->decision_ids) (void)store_.SetDecisionEpoch(id, r.epoch);
      if (!rounds_) {
        spdlog::info("graced: epoch {} committed, switch at step {}", r.epoch,
                     coordinator_.switch_step());
      }
      return pending_;
    }
    case EpochCoordinator::Phase::kDone:
      if (coordinator_.switch_timed_out().empty()) {
        spdlog::info("graced: every agent switched to epoch {} ({} ms from PREPARE)",
                     coordinator_.epoch(), coordinator_.prepare_to_switch_ms());
        metrics->prepare_to_switch_seconds.Observe(coordinator_.prepare_to_switch_ms() / 1000.0);
      } else {
        // Logged once, here: the epoch stands; the agents named re-sync when they reconnect.
        spdlog::warn("graced: migration to epoch {} past its deadline in phase committed: {}",
                     coordinator_.epoch(), coordinator_.switch_timed_out());
        (void)store_.RecordAgentEvent(
            {now_ms, "graced", "switch_timed_out", coordinator_.switch_timed_out()});
        ++metrics->migrations_timed_out_total;
      }
      if (rounds_ && rounds_->next + 1 < rounds_->placements.size()) {
        // The next round, from the placement this one committed.
        const Placement from = rounds_->placements[rounds_->next];
        const Epoch next = coordinator_.next_epoch(coordinator_.epoch());
        ++rounds_->next;
        coordinator_.Reset();
        if (Status s = BeginRound(next, from, now_ms); !s.ok()) {
          spdlog::warn("graced: migration round {} of {} to epoch {} not started: {}",
                       rounds_->next + 1, rounds_->placements.size(), next, s.message());
          rounds_.reset();
          pending_.reset();
        }
        break;
      }
      coordinator_.Reset();
      pending_.reset();
      rounds_.reset();
      break;
    case EpochCoordinator::Phase::kAborted:
      // Logged once, with the phase it was in and, on a timeout, the agents it waited for.
      spdlog::warn("graced: migration to epoch {} aborted in phase {}: {}", coordinator_.epoch(),
                   EpochPhaseName(coordinator_.abort_phase()), coordinator_.abort_reason());
      (void)store_.RecordAgentEvent(
          {now_ms, "graced", "migration_aborted", coordinator_.abort_reason()});
      ++metrics->migrations_aborted_total;
      if (rounds_ && rounds_->next > 0) {
        spdlog::warn(
            "graced: migration rounds stop after round {} of {}: epoch {} serves its "
            "(valid) intermediate placement",
            rounds_->next, rounds_->placements.size(), rounds_->committed);
      }
      coordinator_.Reset();
      pending_.reset();
      rounds_.reset();
      break;
    default: break;
  }
  return std::nullopt;
}

void MigrationDriver::FillGauges(int64_t now_ms, DaemonMetrics* metrics) const {
  metrics->migration_phase = static_cast<int>(coordinator_.phase());
  metrics->migration_age_s =
      static_cast<double>(std::max<int64_t>(0, coordinator_.age_ms(now_ms))) / 1000.0;
  // The same two, as the alert rules and the dashboard read them.
  metrics->migration_in_progress = coordinator_.phase() != EpochCoordinator::Phase::kIdle;
  metrics->migration_running_s = metrics->migration_age_s;
}

}  // namespace grace
