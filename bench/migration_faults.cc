// The epoch protocol's fault cases (bench/migration_bench.h, docs/protocol.md "Epochs").
#include <signal.h>

#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "agent/local_cluster.h"
#include "bench/migration_bench.h"
#include "bench/migration_graced_fault.h"
#include "bench/migration_run.h"
#include "tests/testing/frame_proxy.h"

namespace grace {

using std::chrono::milliseconds;

namespace {

// One fault case of the epoch protocol (docs/protocol.md, "Epochs"): 4 agents behind a
// FrameProxy, one migration with the fault injected, the run checked against the dense
// reference with every rank's (step, epoch).
StatusOr<nlohmann::json> RunFault(const MigrationBenchOptions& o, const Topology& topo,
                                  const std::string& name) {
  using Action = testing::FrameProxy::Action;
  MigrationBenchOptions k = o;
  // Plaintext on both sides, on purpose: the FrameProxy between them reads and rules on
  // frames, which TLS would (rightly) hide from it.
  k.agent_tls = AgentChannelTls::kOff;
  // Room for the faulted migration, the agents' recovery and one more migration.
  k.steps = std::max(o.steps, static_cast<int>(7 * o.steps_per_second));
  MigrationTestDaemonOptions dopt = DaemonOptions(k, topo);
  dopt.lost_after_ms = 800;
  dopt.coordinator.ready_timeout_ms = 4000;
  dopt.coordinator.switch_timeout_ms = 1500;
  auto daemon = std::make_unique<MigrationTestDaemon>(dopt);
  GRACE_RETURN_IF_ERROR(daemon->Start());
  testing::FrameProxy proxy(daemon->port());
  GRACE_RETURN_IF_ERROR(proxy.Start());
  GRACE_ASSIGN_OR_RETURN(RunSetup setup,
                         WriteConfigs(k, topo, o.work_dir + "/fault_" + name, proxy.port(), 0));
  Cluster cluster;
  GRACE_RETURN_IF_ERROR(cluster.Start(o.agent_binary, setup));
  GRACE_RETURN_IF_ERROR(daemon->WaitForAgents(topo.ranks(), o.timeout));
  GRACE_RETURN_IF_ERROR(
      daemon->WaitForStep(static_cast<uint64_t>(o.steps_per_second / 2), o.timeout));
  std::mt19937 rng(o.seed + 7);
  Placement next;
  do {
    next = RandomReplacement(daemon->placement(), topo, o.moves_per_layer, rng);
  } while (next == daemon->placement());
  const Epoch before = daemon->epoch();
  const milliseconds deadline(6000);
  auto wait_fired = [&](int n) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (proxy.fired() < n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    return proxy.fired() >= n;
  };
  const int victim = 1;
  const std::string victim_id = "agent" + std::to_string(victim);
  MigrationOutcome m;
  bool committed = false;
  nlohmann::json sigterm;
  if (name == "commit_delayed_past_switch_step") {
    // Every COMMIT arrives 3x the switch margin late.
    const int late_ms =
        static_cast<int>(3000.0 * dopt.coordinator.switch_margin_steps / o.steps_per_second);
    for (int r = 0; r < topo.ranks(); ++r) {
      proxy.AddRule(
          {true, MessageType::kCommit, "agent" + std::to_string(r), 1, Action::kDelay, late_ms});
    }
    GRACE_ASSIGN_OR_RETURN(m, daemon->Migrate(next, o.timeout));
  } else if (name == "commit_lost_to_one_agent") {
    proxy.AddRule({true, MessageType::kCommit, victim_id, 1, Action::kDrop, 0});
    GRACE_ASSIGN_OR_RETURN(m, daemon->Migrate(next, o.timeout));
  } else if (name == "cut_after_prepare") {
    proxy.AddRule({true, MessageType::kPrepare, victim_id, 1, Action::kCut, 0});
    GRACE_ASSIGN_OR_RETURN(m, daemon->Migrate(next, o.timeout));
  } else if (name == "cut_after_ready") {
    // The victim's READY is in; another agent's is held while the victim's connection is cut.
    proxy.AddRule({false, MessageType::kReady, victim_id, 1, Action::kDelay, 0});
    proxy.AddRule({false, MessageType::kReady, "agent3", 1, Action::kDelay, -1});
    GRACE_ASSIGN_OR_RETURN(m, daemon->Migrate(next, o.timeout, [&] {
      if (wait_fired(2)) std::this_thread::sleep_for(milliseconds(50));
      proxy.Cut(victim_id);
      std::this_thread::sleep_for(milliseconds(100));
      proxy.Release();
    }));
  } else if (name == "cut_after_commit") {
    proxy.AddRule({true, MessageType::kCommit, victim_id, 1, Action::kCut, 0});
    GRACE_ASSIGN_OR_RETURN(m, daemon->Migrate(next, o.timeout));
  } else if (name == "daemon_killed_between_commits") {
    // COMMIT reaches agents 0 and 1; the daemon dies before 2 and 3 get theirs (held), and a
    // new one starts from the persisted epoch.
    proxy.AddRule({true, MessageType::kCommit, "agent2", 1, Action::kDelay, -1});
    proxy.AddRule({true, MessageType::kCommit, "agent3", 1, Action::kDelay, -1});
    StatusOr<MigrationOutcome> first = Unavailable("not run");
    std::thread migrating([&] { first = daemon->Migrate(next, deadline); });
    wait_fired(2);
    daemon->Stop();
    proxy.Cut();
    const Epoch persisted = daemon->epoch();
    const Placement placement = daemon->placement();
    auto restarted = std::make_unique<MigrationTestDaemon>(dopt);
    restarted->Restore(persisted, placement);
    GRACE_RETURN_IF_ERROR(restarted->Start());
    proxy.SetUpstream(restarted->port());
    migrating.join();
    daemon = std::move(restarted);
    GRACE_RETURN_IF_ERROR(daemon->WaitForAgents(topo.ranks(), o.timeout));
    m.epoch = persisted;
    committed = persisted > before;
    m.committed = committed;
  } else if (name == "agent_sigkilled_after_ready" || name == "agent_sigstopped_after_ready") {
    const bool stop = name == "agent_sigstopped_after_ready";
    proxy.AddRule({false, MessageType::kReady, victim_id, 1, Action::kDelay, 0});
    proxy.AddRule({false, MessageType::kReady, "agent3", 1, Action::kDelay, -1});
    GRACE_ASSIGN_OR_RETURN(m, daemon->Migrate(next, o.timeout, [&] {
      wait_fired(2);
      if (stop) {
        ::kill(cluster.pids[victim], SIGSTOP);
        // Past the daemon's lost_after_ms: it drops the agent and aborts.
        std::this_thread::sleep_for(milliseconds(dopt.lost_after_ms + 700));
        ::kill(cluster.pids[victim], SIGCONT);
      } else {
        KillAgentProcess(cluster.pids[victim]);
        cluster.pids[victim] = 0;
        // The held READYs go out only once the daemon has seen the victim's connection close:
        // released first, they could complete the READY set and commit (a race under load).
        const auto until = std::chrono::steady_clock::now() + deadline;
        while (daemon->connected(victim_id) && std::chrono::steady_clock::now() < until) {
          std::this_thread::sleep_for(milliseconds(5));
        }
      }
      proxy.Release();
    }));
    if (!stop) {
      GRACE_ASSIGN_OR_RETURN(cluster.pids[victim],
                             StartAgentProcess(o.agent_binary, setup.configs[victim]));
    }
  } else if (name == "agent_sigterm") {
    // Leaves cleanly mid-run (no migration in flight): exit 0, listed as left; restarted.
    ::kill(cluster.pids[victim], SIGTERM);
    GRACE_ASSIGN_OR_RETURN(int code, WaitAgentProcess(cluster.pids[victim], milliseconds(10000)));
    cluster.pids[victim] = 0;
    sigterm = {{"exit_code", code}, {"left", daemon->left().count(victim_id) == 1}};
    GRACE_ASSIGN_OR_RETURN(cluster.pids[victim],
                           StartAgentProcess(o.agent_binary, setup.configs[victim]));
  } else if (name == "switched_never_reported") {
    proxy.AddRule({false, MessageType::kSwitched, victim_id, 1, Action::kDrop, 0});
    GRACE_ASSIGN_OR_RETURN(m, daemon->Migrate(next, o.timeout));
  } else {
    return InvalidArgument("unknown fault case " + name);
  }
  committed = committed || m.committed;
  // The next migration must start and end: nothing is left blocked.
  Placement after;
  do {
    after = RandomReplacement(daemon->placement(), topo, o.moves_per_layer, rng);
  } while (after == daemon->placement());
  GRACE_RETURN_IF_ERROR(daemon->WaitForAgents(topo.ranks(), o.timeout));
  StatusOr<MigrationOutcome> later = daemon->Migrate(after, o.timeout);
  GRACE_RETURN_IF_ERROR(cluster.Wait(o.timeout));
  GRACE_ASSIGN_OR_RETURN(RunCheck rc, CheckRun(k, topo, setup.dir));
  nlohmann::json j = {
      {"case", name},
      {"outcome", committed ? "committed" : "aborted"},
      {"mixed_epoch_steps", rc.mixed_epoch_steps},
      {"tokens_lost", rc.tokens_lost + rc.tokens_duplicated},
      {"checksum_mismatches", rc.checksum_mismatches + rc.token_mismatches},
      {"abort_reason", m.abort_reason},
      {"unconfirmed", m.unconfirmed},
      {"epochs_served", std::set<Epoch>(rc.step_epoch.begin(), rc.step_epoch.end())},
      {"next_migration_switched", later.ok() && later->switched},
      {"next_migration", later.ok() ? later->abort_reason : later.status().message()}};
  if (!sigterm.is_null()) {
    j["outcome"] = "left";
    j["sigterm"] = sigterm;
  }
  return j;
}

}  // namespace

std::vector<std::string> MigrationFaultCases() {
  return {"commit_delayed_past_switch_step",
          "commit_lost_to_one_agent",
          "cut_after_prepare",
          "cut_after_ready",
          "cut_after_commit",
          "daemon_killed_between_commits",
          "agent_sigkilled_after_ready",
          "agent_sigstopped_after_ready",
          "switched_never_reported",
          "agent_sigterm",
          kGracedKilledBetweenCommits,
          kWeightsCorruptedInFlight};
}

StatusOr<nlohmann::json> RunMigrationFaultCase(const MigrationBenchOptions& in,
                                               const std::string& name) {
  MigrationBenchOptions o = in;
  if (o.agent_binary.empty()) o.agent_binary = FindAgentBinary();
  const bool own_dir = o.work_dir.empty();
  if (own_dir) {
    o.work_dir = (std::filesystem::temp_directory_path() /
                  ("grace_fault_" + name + "_" + std::to_string(::getpid())))
                     .string();
  }
  Topology topo;
  topo.nodes = 2;
  topo.gpus_per_node = 2;
  topo.slots_per_gpu = o.slots_per_rank;
  StatusOr<nlohmann::json> j =
      name == kGracedKilledBetweenCommits ? RunGracedKilledBetweenCommits(o, topo)
      : name == kWeightsCorruptedInFlight ? RunWeightsCorruptedInFlight(o, topo)
                                          : RunFault(o, topo, name);
  if (own_dir && j.ok()) std::filesystem::remove_all(o.work_dir);
  return j;
}

}  // namespace grace
