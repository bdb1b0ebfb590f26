#include "migrate/epoch_coordinator.h"

#include <algorithm>

namespace grace {

const char* EpochPhaseName(EpochCoordinator::Phase phase) {
  switch (phase) {
    case EpochCoordinator::Phase::kIdle: return "idle";
    case EpochCoordinator::Phase::kPreparing: return "preparing";
    case EpochCoordinator::Phase::kReadyToCommit: return "ready-to-commit";
    case EpochCoordinator::Phase::kCommitted: return "committed";
    case EpochCoordinator::Phase::kDone: return "done";
    case EpochCoordinator::Phase::kAborted: return "aborted";
  }
  return "?";
}

int64_t EpochCoordinator::age_ms(int64_t now_ms) const {
  return phase_ == Phase::kIdle ? 0 : now_ms - begin_ms_;
}

Status EpochCoordinator::Begin(Epoch epoch, const Placement& placement, const Topology& topology,
                               const MigrationPlan& plan, const std::vector<std::string>& agents,
                               int64_t now_ms, std::vector<float> expected_load) {
  if (phase_ != Phase::kIdle) {
    return FailedPrecondition(std::string("a migration to epoch ") + std::to_string(epoch_) +
                              " is " + EpochPhaseName(phase_));
  }
  if (epoch <= last_committed_ || epoch <= last_begun_) {
    return InvalidArgument("epoch " + std::to_string(epoch) + " is not after the committed epoch " +
                           std::to_string(last_committed_) + " and every attempt begun (" +
                           std::to_string(last_begun_) + ")");
  }
  if (agents.empty()) return FailedPrecondition("no agents to migrate");
  Prepare prepare;
  prepare.epoch = epoch;
  prepare.placement_json = PlacementToJson(placement, topology);
  prepare.expected_load = std::move(expected_load);
  for (const ExpertTransfer& t : plan.transfers) {
    prepare.transfers.push_back({t.layer_index, t.expert, t.src_slot, t.dst_slot, t.bytes});
  }
  epoch_ = epoch;
  last_begun_ = epoch;
  answered_.clear();
  timed_out_.clear();
  unconfirmed_.clear();
  for (const std::string& a : agents) answered_[a] = false;
  begin_ms_ = now_ms;
  abort_reason_.clear();
  phase_ = Phase::kPreparing;
  for (const std::string& a : agents) {
    if (!send_(a, prepare)) {
      Abort("agent " + a + " is not connected");
      return Aborted(abort_reason_);
    }
  }
  return Status::Ok();
}

void EpochCoordinator::OnReady(const std::string& agent_id, Epoch epoch) {
  if (phase_ != Phase::kPreparing || epoch != epoch_) return;
  auto it = answered_.find(agent_id);
  if (it == answered_.end()) return;
  it->second = true;
  if (std::all_of(answered_.begin(), answered_.end(), [](const auto& a) { return a.second; })) {
    phase_ = Phase::kReadyToCommit;
  }
}

void EpochCoordinator::OnStep(const std::string& agent_id, uint64_t step) {
  uint64_t& s = steps_[agent_id];
  s = std::max(s, step);
}

void EpochCoordinator::OnSwitched(const std::string& agent_id, Epoch epoch, uint64_t step) {
  OnStep(agent_id, step);
  if (phase_ != Phase::kCommitted || epoch != epoch_) return;
  auto it = answered_.find(agent_id);
  if (it != answered_.end()) it->second = true;
}

void EpochCoordinator::OnAgentJoined(const std::string& agent_id) {
  // A participant that reconnects may have lost what it staged, and its READY may be from the
  // old connection: an uncommitted migration cannot count on it.
  if (answered_.count(agent_id) != 0 &&
      (phase_ == Phase::kPreparing || phase_ == Phase::kReadyToCommit)) {
    Abort("agent " + agent_id + " reconnected before COMMIT");
  }
}

void EpochCoordinator::OnAgentLost(const std::string& agent_id) {
  steps_.erase(agent_id);
  if (answered_.count(agent_id) == 0) return;
  if (phase_ == Phase::kPreparing || phase_ == Phase::kReadyToCommit) {
    Abort("agent " + agent_id + " was lost before COMMIT");
  } else if (phase_ == Phase::kCommitted) {
    // The epoch is decided; the agent re-syncs to it when it rejoins.
    answered_.erase(agent_id);
  }
}

EpochCoordinator::Phase EpochCoordinator::Poll(int64_t now_ms) {
  auto waiting = [this] {
    std::string out;
    for (const std::string& a : Waiting()) out += (out.empty() ? "" : ", ") + a;
    return out;
  };
  if (phase_ == Phase::kPreparing && now_ms - begin_ms_ > options_.ready_timeout_ms) {
    Abort("no READY within " + std::to_string(options_.ready_timeout_ms) + " ms from " + waiting());
  }
  if (phase_ == Phase::kCommitted &&
      std::all_of(answered_.begin(), answered_.end(), [](const auto& a) { return a.second; })) {
    phase_ = Phase::kDone;
    done_ms_ = now_ms;
  }
  if (phase_ == Phase::kCommitted && now_ms - commit_ms_ > options_.switch_timeout_ms) {
    // The epoch is decided and persisted: it cannot be undone. Stop waiting; an agent that has
    // not switched re-syncs to it when it reconnects (its Welcome carries the epoch).
    timed_out_ = "no SWITCHED within " + std::to_string(options_.switch_timeout_ms) +
                 " ms of COMMIT from " + waiting();
    unconfirmed_ = Waiting();
    phase_ = Phase::kDone;
    done_ms_ = now_ms;
  }
  return phase_;
}

StatusOr<uint64_t> EpochCoordinator::Commit(int64_t now_ms) {
  if (phase_ != Phase::kReadyToCommit) {
    return FailedPrecondition(std::string("cannot commit: migration is ") + EpochPhaseName(phase_));
  }
  uint64_t newest = 0;
  for (const auto& [agent, step] : steps_) newest = std::max(newest, step);
  switch_step_ = newest + options_.switch_margin_steps;
  for (auto& [agent, answered] : answered_) answered = false;
  phase_ = Phase::kCommitted;
  last_committed_ = epoch_;
  commit_ms_ = now_ms;
  SendAll(grace::Commit{epoch_, switch_step_});
  return switch_step_;
}

void EpochCoordinator::Abort(const std::string& reason) {
  if (phase_ != Phase::kPreparing && phase_ != Phase::kReadyToCommit) return;
  abort_phase_ = phase_;
  abort_reason_ = reason;
  phase_ = Phase::kAborted;
  SendAll(grace::Abort{epoch_, reason});
}

void EpochCoordinator::Reset() {
  if (phase_ == Phase::kDone || phase_ == Phase::kAborted) phase_ = Phase::kIdle;
}

std::vector<std::string> EpochCoordinator::Waiting() const {
  std::vector<std::string> out;
  for (const auto& [agent, answered] : answered_) {
    if (!answered) out.push_back(agent);
  }
  return out;
}

void EpochCoordinator::SendAll(const WireMessage& m) {
  for (const auto& [agent, answered] : answered_) send_(agent, m);
}

}  // namespace grace
