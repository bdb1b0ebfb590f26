#include "daemon/migration_driver.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace grace {

MigrationDriver::MigrationDriver(EpochCoordinator::SendFn send, HistoryStore& store,
                                 const Topology& topology, EpochCoordinatorOptions options)
    : store_(store), topology_(topology), coordinator_(std::move(send), options) {}

Status MigrationDriver::Begin(Epoch epoch, MigrationTarget target, const MigrationPlan& plan,
                              const std::vector<std::string>& participants, int64_t now_ms) {
  pending_ = std::move(target);
  return coordinator_.Begin(epoch, pending_->placement, topology_, plan, participants, now_ms,
                            pending_->expected_load);
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
      Realisation real;
      real.decision_ids = pending_->decision_ids;
      real.layers = pending_->layers;
      for (int l : pending_->layers) real.before.push_back(before[l]);
      real.intervals_left = std::max(1, horizon);
      realisations_.push_back(std::move(real));
      for (int64_t id : pending_->decision_ids) (void)store_.SetDecisionEpoch(id, r.epoch);
      ++metrics->migrations_total;
      metrics->migration_bytes_total += pending_->bytes;
      spdlog::info("graced: epoch {} committed, switch at step {}", r.epoch,
                   coordinator_.switch_step());
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
      coordinator_.Reset();
      pending_.reset();
      break;
    case EpochCoordinator::Phase::kAborted:
      // Logged once, with the phase it was in and, on a timeout, the agents it waited for.
      spdlog::warn("graced: migration to epoch {} aborted in phase {}: {}", coordinator_.epoch(),
                   EpochPhaseName(coordinator_.abort_phase()), coordinator_.abort_reason());
      (void)store_.RecordAgentEvent(
          {now_ms, "graced", "migration_aborted", coordinator_.abort_reason()});
      ++metrics->migrations_aborted_total;
      coordinator_.Reset();
      pending_.reset();
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
