#include "bench/migration_daemon.h"

#include <cstdio>

namespace grace {
namespace {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

MigrationTestDaemon::MigrationTestDaemon(MigrationTestDaemonOptions options)
    : options_(std::move(options)),
      coordinator_([this](const std::string& agent,
                          const WireMessage& m) { return server_->Send(agent, m); },
                   options_.coordinator),
      placement_(options_.placement) {
  AgentServerOptions so;
  so.port = 0;
  so.cluster_secret = options_.cluster_secret;
  so.tls = options_.agent_tls;
  so.heartbeat_ms = options_.heartbeat_ms;
  so.report_ms = options_.report_ms;
  so.lost_after_ms = options_.lost_after_ms;
  server_ = std::make_unique<AgentServer>(*this, so);
}

MigrationTestDaemon::~MigrationTestDaemon() {
  Stop();
}

Status MigrationTestDaemon::Start() {
  return server_->Start();
}
void MigrationTestDaemon::Stop() {
  server_->Stop();
}
int MigrationTestDaemon::port() const {
  return server_->port();
}

Status MigrationTestDaemon::WaitForAgents(int agents, std::chrono::milliseconds timeout) {
  // Joined here and registered with the server (which happens just after OnAgentJoined): only
  // then can a PREPARE reach it.
  auto up = [&] {
    int n = 0;
    for (const AgentStatus& a : server_->Agents()) n += a.state == "up";
    return static_cast<int>(connected_.size()) >= agents && n >= agents;
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  while (!up()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return DeadlineExceeded(std::to_string(connected_.size()) + " of " + std::to_string(agents) +
                              " agents connected after " + std::to_string(timeout.count()) + " ms");
    }
    changed_.wait_for(lock, std::chrono::milliseconds(5));
  }
  return Status::Ok();
}

Status MigrationTestDaemon::WaitForStep(uint64_t step, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!changed_.wait_for(lock, timeout, [&] { return newest_step_ >= step; })) {
    return DeadlineExceeded("no agent reached step " + std::to_string(step) + " within " +
                            std::to_string(timeout.count()) + " ms");
  }
  return Status::Ok();
}

uint64_t MigrationTestDaemon::newest_step() const {
  std::lock_guard<std::mutex> lock(mu_);
  return newest_step_;
}

StatusOr<MigrationOutcome> MigrationTestDaemon::Migrate(
    const Placement& to, std::chrono::milliseconds timeout,
    const std::function<void()>& after_prepare) {
  MigrationOutcome out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    GRACE_RETURN_IF_ERROR(to.Validate(options_.topology));
    GRACE_ASSIGN_OR_RETURN(MigrationPlan plan, PlanMigration(options_.topology, placement_, to,
                                                             options_.bytes_per_expert));
    out.epoch = coordinator_.next_epoch(epoch_);
    out.bytes_minimum = plan.total_bytes;
    out.transfers = plan.transfers.size();
    std::vector<std::string> agents;
    for (const auto& [id, step] : connected_) agents.push_back(id);
    coordinator_.Reset();
    const Status begun =
        coordinator_.Begin(out.epoch, to, options_.topology, plan, agents, SteadyMs());
    if (!begun.ok()) {
      out.abort_reason = begun.message();
      coordinator_.Reset();
      return out;
    }
  }
  if (after_prepare) after_prepare();
  const int64_t deadline = SteadyMs() + timeout.count();
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    const EpochCoordinator::Phase phase = coordinator_.Poll(SteadyMs());
    if (phase == EpochCoordinator::Phase::kReadyToCommit) {
      // "Persist" the epoch, then commit: a rejoining agent gets the new placement.
      epoch_ = out.epoch;
      placement_ = to;
      GRACE_ASSIGN_OR_RETURN(out.switch_step, coordinator_.Commit(SteadyMs()));
      out.committed = true;
    } else if (phase == EpochCoordinator::Phase::kDone) {
      out.switched = coordinator_.switch_timed_out().empty();
      out.committed = true;
      out.unconfirmed = coordinator_.unconfirmed();
      out.prepare_to_switch_ms = static_cast<double>(coordinator_.prepare_to_switch_ms());
      coordinator_.Reset();
      return out;
    } else if (phase == EpochCoordinator::Phase::kAborted) {
      out.abort_reason = coordinator_.abort_reason();
      coordinator_.Reset();
      return out;
    }
    if (SteadyMs() > deadline) {
      coordinator_.Abort("the test daemon's deadline passed");
      std::string waiting;
      for (const std::string& a : coordinator_.Waiting()) waiting += " " + a;
      return DeadlineExceeded("migration to epoch " + std::to_string(out.epoch) + " still " +
                              EpochPhaseName(coordinator_.phase()) + " after " +
                              std::to_string(timeout.count()) + " ms; waiting for" + waiting);
    }
    changed_.wait_for(lock, std::chrono::milliseconds(5));
  }
}

Epoch MigrationTestDaemon::epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return epoch_;
}

Placement MigrationTestDaemon::placement() const {
  std::lock_guard<std::mutex> lock(mu_);
  return placement_;
}

uint64_t MigrationTestDaemon::load_reports() const {
  std::lock_guard<std::mutex> lock(mu_);
  return load_reports_;
}

std::map<std::string, Epoch> MigrationTestDaemon::joined_at_epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hello_epoch_;
}

std::set<std::string> MigrationTestDaemon::left() const {
  std::lock_guard<std::mutex> lock(mu_);
  return left_;
}

void MigrationTestDaemon::Restore(Epoch epoch, const Placement& placement) {
  std::lock_guard<std::mutex> lock(mu_);
  epoch_ = epoch;
  placement_ = placement;
}

std::map<std::string, Epoch> MigrationTestDaemon::serving_epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return heartbeat_epoch_;
}

std::vector<int> MigrationTestDaemon::spare_slots_per_rank() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> out(options_.topology.ranks(), -1);
  for (const auto& [r, n] : spare_slots_) {
    if (r >= 0 && r < static_cast<int>(out.size())) out[r] = n;
  }
  return out;
}

StatusOr<Welcome> MigrationTestDaemon::OnAgentJoined(const Hello& hello) {
  std::lock_guard<std::mutex> lock(mu_);
  coordinator_.OnAgentJoined(hello.agent_id);
  connected_[hello.agent_id] = 0;
  hello_epoch_[hello.agent_id] = hello.epoch;
  for (RankId r : hello.ranks) spare_slots_[r] = hello.spare_slots.value_or(-1);
  Welcome w;
  w.epoch = epoch_;
  w.placement_json = PlacementToJson(placement_, options_.topology);
  changed_.notify_all();
  return w;
}

bool MigrationTestDaemon::connected(const std::string& agent_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_.count(agent_id) != 0;
}

void MigrationTestDaemon::OnAgentLost(const std::string& agent_id, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  std::fprintf(stderr, "test daemon: agent %s lost: %s\n", agent_id.c_str(), reason.c_str());
  connected_.erase(agent_id);
  coordinator_.OnAgentLost(agent_id);
  changed_.notify_all();
}

void MigrationTestDaemon::OnMessage(const std::string& agent_id, const WireMessage& message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (const auto* hb = std::get_if<Heartbeat>(&message)) {
    coordinator_.OnStep(agent_id, hb->step);
    connected_[agent_id] = hb->step;
    heartbeat_epoch_[agent_id] = hb->epoch;
    newest_step_ = std::max(newest_step_, hb->step);
  } else if (const auto* r = std::get_if<Ready>(&message)) {
    coordinator_.OnReady(agent_id, r->epoch);
  } else if (const auto* s = std::get_if<Switched>(&message)) {
    coordinator_.OnSwitched(agent_id, s->epoch, s->step);
  } else if (const auto* a = std::get_if<Abort>(&message)) {
    // An agent that cannot stage its copies (as graced's MigrationDriver::OnAgentAbort).
    if (a->epoch == coordinator_.epoch())
      coordinator_.Abort("agent " + agent_id + ": " + a->reason);
  } else if (std::holds_alternative<LoadReport>(message)) {
    ++load_reports_;
  } else if (std::holds_alternative<Goodbye>(message)) {
    left_.insert(agent_id);
    coordinator_.OnAgentLost(agent_id);
  }
  changed_.notify_all();
}

void MigrationTestDaemon::OnConnectionRejected(const std::string& peer, const std::string& reason) {
  std::fprintf(stderr, "test daemon: rejected %s: %s\n", peer.c_str(), reason.c_str());
}

}  // namespace grace
