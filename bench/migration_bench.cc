#include "bench/migration_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "agent/dense_reference.h"
#include "agent/local_cluster.h"
#include "agent/replay.h"
#include "bench/migration_daemon.h"

namespace grace {
namespace {

using std::chrono::milliseconds;

// A valid placement a few moves from `p`: swaps of two slots on different ranks and retargets
// of a slot whose expert has another replica.
Placement RandomReplacement(const Placement& p, const Topology& topo, int moves,
                            std::mt19937& rng) {
  Placement q = p;
  const int slots = topo.total_slots(), spr = topo.slots_per_gpu;
  for (int l = 0; l < q.num_layers(); ++l) {
    auto& row = q.physical_to_logical[l];
    for (int m = 0; m < moves; ++m) {
      const SlotId a = static_cast<SlotId>(rng() % slots);
      if (rng() % 2 == 0) {
        const SlotId b = static_cast<SlotId>(rng() % slots);
        if (a / spr != b / spr && row[a] != row[b]) std::swap(row[a], row[b]);
      } else {
        const std::vector<int> counts = q.ReplicaCounts(l);
        const ExpertId e = static_cast<ExpertId>(rng() % q.num_experts);
        if (row[a] != kEmptySlot && counts[row[a]] > 1 && e != row[a]) row[a] = e;
      }
    }
  }
  return q;
}

struct RunSetup {
  std::string dir;
  std::vector<std::string> configs;
};

StatusOr<RunSetup> WriteConfigs(const MigrationBenchOptions& o, const Topology& topo,
                                const std::string& dir, int daemon_port, double max_bytes_per_s) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return Unavailable(dir + ": " + ec.message());
  GRACE_ASSIGN_OR_RETURN(int port, PickFreePortRange(1));
  GRACE_ASSIGN_OR_RETURN(int migration_port, PickFreePortRange(8));
  RunSetup setup{dir, {}};
  for (int r = 0; r < topo.ranks(); ++r) {
    const std::string path = dir + "/agent" + std::to_string(r) + ".toml";
    std::ofstream out(path);
    out << "[cluster]\nnodes = " << topo.nodes << "\nranks_per_node = " << topo.gpus_per_node
        << "\nslots_per_rank = " << topo.slots_per_gpu << "\n[agent]\nfirst_rank = " << r
        << "\n[transport]\nrendezvous = \"127.0.0.1:" << port
        << "\"\nconnect_timeout_ms = 20000\n[model]\nexperts = " << o.experts
        << "\ntop_k = " << o.top_k << "\nhidden = " << o.hidden << "\nffn = " << o.ffn
        << "\nlayers = " << o.layers << "\n[weights]\nseed = " << o.seed
        << "\n[replay]\nsteps = " << o.steps << "\ntokens_per_rank = " << o.tokens_per_rank
        << "\nsteps_per_second = " << o.steps_per_second << "\nseed = " << o.seed + 100
        << "\n[daemon]\naddress = \"127.0.0.1:" << daemon_port
        << "\"\ncluster_secret = \"grace-test-secret\"\nagent_id = \"agent" << r
        << "\"\n[migration]\nrendezvous = \"127.0.0.1:" << migration_port
        << "\"\nchunk_bytes = 16384\nmax_bytes_per_s = " << max_bytes_per_s
        << "\n[output]\ndir = \"" << dir << "\"\nwrite_outputs = true\n";
    if (!out) return Unavailable(path + ": cannot write");
    setup.configs.push_back(path);
  }
  return setup;
}

// What the replay wrote, checked against the dense reference.
struct RunCheck {
  int64_t tokens_expected = 0, tokens_lost = 0, tokens_duplicated = 0, token_mismatches = 0;
  int64_t checksum_mismatches = 0, checksum_lines_missing = 0, mixed_epoch_steps = 0;
  double max_abs_error = 0;
  std::vector<double> step_ms;  // per step: the slowest rank's compute time
  std::vector<Epoch> step_epoch;
  uint64_t bytes_in = 0, bytes_sent = 0;
  std::map<std::string, int> outcomes;  // agent-side results
};

StatusOr<RunCheck> CheckRun(const MigrationBenchOptions& o, const Topology& topo,
                            const std::string& dir) {
  RunCheck rc;
  ModelShape shape;
  shape.num_experts = o.experts;
  shape.top_k = o.top_k;
  shape.hidden = o.hidden;
  shape.ffn = o.ffn;
  shape.num_layers = o.layers;
  const ExpertWeights weights = GenerateExpertWeights(shape, o.seed);
  const int ranks = topo.ranks(), T = o.tokens_per_rank, h = o.hidden;
  rc.step_ms.assign(o.steps, 0);
  rc.step_epoch.assign(o.steps, 0);
  std::vector<double> x(0);
  std::vector<float> ref(static_cast<size_t>(T) * h);
  for (int r = 0; r < ranks; ++r) {
    const std::string base = dir + "/rank" + std::to_string(r);
    std::map<int64_t, std::vector<float>> got;
    {
      std::ifstream in(base + ".outputs", std::ios::binary);
      int64_t token;
      std::vector<float> v(h);
      while (in.read(reinterpret_cast<char*>(&token), sizeof token)) {
        in.read(reinterpret_cast<char*>(v.data()), sizeof(float) * h);
        if (!got.emplace(token, v).second) ++rc.tokens_duplicated;
      }
    }
    std::map<int, double> sums;
    {
      std::ifstream in(base + ".checksums");
      std::string line;
      while (std::getline(in, line)) {
        int s = 0, n = 0;
        double sum = 0;
        if (std::sscanf(line.c_str(), "step %d tokens %d checksum %lf", &s, &n, &sum) == 3) {
          sums[s] = sum;
        }
      }
    }
    {
      std::ifstream in(base + ".steps");
      std::string line;
      std::map<int, Epoch> epochs;
      while (std::getline(in, line)) {
        int s = 0;
        unsigned long long e = 0, us = 0;
        if (std::sscanf(line.c_str(), "step %d epoch %llu us %llu", &s, &e, &us) == 3 && s >= 0 &&
            s < o.steps) {
          rc.step_ms[s] = std::max(rc.step_ms[s], us / 1000.0);
          if (r == 0) {
            rc.step_epoch[s] = e;
          } else if (rc.step_epoch[s] != e) {
            ++rc.mixed_epoch_steps;
          }
        }
      }
    }
    for (int s = 0; s < o.steps; ++s) {
      for (int t = 0; t < T; ++t) {
        GenerateHidden(o.seed + 100, (static_cast<int64_t>(s) * ranks + r) * T + t, h,
                       &ref[static_cast<size_t>(t) * h]);
      }
      DenseForward(weights, nullptr, nullptr, T, ref.data());
      double ref_sum = 0, ref_abs = 0;
      for (float v : ref) {
        ref_sum += v;
        ref_abs += std::fabs(v);
      }
      auto it = sums.find(s);
      if (it == sums.end()) {
        ++rc.checksum_lines_missing;
        ++rc.checksum_mismatches;
      } else if (std::fabs(it->second - ref_sum) > 1e-5 * ref_abs + 1e-6) {
        ++rc.checksum_mismatches;
      }
      for (int t = 0; t < T; ++t) {
        ++rc.tokens_expected;
        auto g = got.find((static_cast<int64_t>(s) * ranks + r) * T + t);
        if (g == got.end()) {
          ++rc.tokens_lost;
          continue;
        }
        bool bad = false;
        for (int c = 0; c < h; ++c) {
          const float want = ref[static_cast<size_t>(t) * h + c];
          const double err = std::fabs(g->second[c] - want);
          rc.max_abs_error = std::max(rc.max_abs_error, err);
          bad |= !(err <= 1e-4 * (1.0 + std::fabs(want)));
        }
        rc.token_mismatches += bad;
      }
    }
    std::ifstream log(dir + "/agent" + std::to_string(r) + ".migrations.jsonl");
    std::string line;
    while (std::getline(log, line)) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;
      const std::string result = j["result"].get<std::string>();
      ++rc.outcomes[result];
      if (result == "switched") {
        rc.bytes_in += j["bytes_in"].get<uint64_t>();
        rc.bytes_sent += j["bytes_sent"].get<uint64_t>();
      }
    }
  }
  return rc;
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(q * v.size())) - 1)];
}

// Step times after the first few (connection set-up, buffers growing).
std::vector<double> SteadySteps(const RunCheck& rc) {
  const size_t warmup = std::min<size_t>(5, rc.step_ms.size());
  return {rc.step_ms.begin() + warmup, rc.step_ms.end()};
}

nlohmann::json CheckJson(const RunCheck& rc) {
  return {{"tokens_expected", rc.tokens_expected},
          {"tokens_lost", rc.tokens_lost},
          {"tokens_duplicated", rc.tokens_duplicated},
          {"token_mismatches", rc.token_mismatches},
          {"checksum_mismatches", rc.checksum_mismatches},
          {"mixed_epoch_steps", rc.mixed_epoch_steps},
          {"max_abs_error", rc.max_abs_error},
          {"agent_outcomes", rc.outcomes}};
}

struct Cluster {
  std::vector<int> pids;
  ~Cluster() {
    for (int p : pids) KillAgentProcess(p);
  }
  Status Start(const std::string& binary, const RunSetup& setup) {
    for (const std::string& c : setup.configs) {
      GRACE_ASSIGN_OR_RETURN(int pid, StartAgentProcess(binary, c));
      pids.push_back(pid);
    }
    return Status::Ok();
  }
  Status Wait(milliseconds timeout) {
    for (size_t i = 0; i < pids.size(); ++i) {
      GRACE_ASSIGN_OR_RETURN(int code, WaitAgentProcess(pids[i], timeout));
      pids[i] = 0;
      if (code != 0) {
        return Internal("grace-agent rank " + std::to_string(i) + " exited with " +
                        std::to_string(code));
      }
    }
    return Status::Ok();
  }
};

MigrationTestDaemonOptions DaemonOptions(const MigrationBenchOptions& o, const Topology& topo) {
  MigrationTestDaemonOptions d;
  d.topology = topo;
  d.placement = DefaultPlacement(topo, o.experts, [&] {
    std::vector<LayerId> ids;
    for (int l = 0; l < o.layers; ++l) ids.push_back(l);
    return ids;
  }());
  d.bytes_per_expert = static_cast<uint64_t>(3) * o.ffn * o.hidden * sizeof(float);
  d.coordinator.ready_timeout_ms = 15000;
  d.coordinator.switch_margin_steps =
      std::max<uint64_t>(8, static_cast<uint64_t>(std::ceil(o.steps_per_second * 0.2)));
  return d;
}

}  // namespace

StatusOr<nlohmann::json> RunMigrationBench(const MigrationBenchOptions& in) {
  MigrationBenchOptions o = in;
  if (o.agent_binary.empty()) o.agent_binary = FindAgentBinary();
  const bool own_dir = o.work_dir.empty();
  if (own_dir) {
    o.work_dir = (std::filesystem::temp_directory_path() /
                  ("grace_migration_bench_" + std::to_string(::getpid())))
                     .string();
  }
  Topology topo;
  topo.nodes = 2;
  topo.gpus_per_node = 2;
  topo.slots_per_gpu = o.slots_per_rank;
  nlohmann::json out;
  out["config"] = {{"ranks", topo.ranks()},
                   {"experts", o.experts},
                   {"top_k", o.top_k},
                   {"hidden", o.hidden},
                   {"ffn", o.ffn},
                   {"layers", o.layers},
                   {"slots_per_rank", o.slots_per_rank},
                   {"tokens_per_rank", o.tokens_per_rank},
                   {"steps", o.steps},
                   {"steps_per_second", o.steps_per_second},
                   {"every_steps", o.every_steps},
                   {"max_bytes_per_s", o.max_bytes_per_s}};

  // Baseline: the same replay and daemon, no migration.
  RunCheck baseline;
  if (o.baseline) {
    MigrationTestDaemon daemon(DaemonOptions(o, topo));
    GRACE_RETURN_IF_ERROR(daemon.Start());
    GRACE_ASSIGN_OR_RETURN(RunSetup setup,
                           WriteConfigs(o, topo, o.work_dir + "/baseline", daemon.port(), 0));
    Cluster cluster;
    GRACE_RETURN_IF_ERROR(cluster.Start(o.agent_binary, setup));
    GRACE_RETURN_IF_ERROR(cluster.Wait(o.timeout));
    GRACE_ASSIGN_OR_RETURN(baseline, CheckRun(o, topo, setup.dir));
  }
  const double p99 = Percentile(SteadySteps(baseline), 0.99);

  // Migration every M steps.
  RunCheck migrated;
  nlohmann::json migrations = nlohmann::json::array();
  uint64_t bytes_minimum = 0;
  {
    MigrationTestDaemon daemon(DaemonOptions(o, topo));
    GRACE_RETURN_IF_ERROR(daemon.Start());
    GRACE_ASSIGN_OR_RETURN(RunSetup setup, WriteConfigs(o, topo, o.work_dir + "/migration",
                                                        daemon.port(), o.max_bytes_per_s));
    Cluster cluster;
    GRACE_RETURN_IF_ERROR(cluster.Start(o.agent_binary, setup));
    GRACE_RETURN_IF_ERROR(daemon.WaitForAgents(topo.ranks(), o.timeout));
    std::mt19937 rng(o.seed);
    for (int at = o.every_steps; at + o.every_steps / 2 < o.steps; at += o.every_steps) {
      GRACE_RETURN_IF_ERROR(daemon.WaitForStep(at, o.timeout));
      const Placement next = RandomReplacement(daemon.placement(), topo, o.moves_per_layer, rng);
      GRACE_ASSIGN_OR_RETURN(MigrationOutcome m, daemon.Migrate(next, o.timeout));
      if (m.switched) bytes_minimum += m.bytes_minimum;
      migrations.push_back({{"epoch", m.epoch},
                            {"switched", m.switched},
                            {"abort_reason", m.abort_reason},
                            {"transfers", m.transfers},
                            {"bytes_minimum", m.bytes_minimum},
                            {"prepare_requested_at_step", at},
                            {"switch_step", m.switch_step},
                            {"prepare_to_switch_ms", m.prepare_to_switch_ms}});
    }
    GRACE_RETURN_IF_ERROR(cluster.Wait(o.timeout));
    GRACE_ASSIGN_OR_RETURN(migrated, CheckRun(o, topo, setup.dir));
  }
  for (auto& m : migrations) {
    // The slowest step from PREPARE to one step past the switch: copies and the switch itself.
    const size_t from = m["prepare_requested_at_step"].get<size_t>();
    const size_t to = std::min(migrated.step_ms.size(), m["switch_step"].get<size_t>() + 2);
    double worst = 0;
    for (size_t s = from; s < to; ++s) worst = std::max(worst, migrated.step_ms[s]);
    m["max_step_ms_while_migrating"] = worst;
  }
  const std::vector<double> steady = SteadySteps(migrated);
  const double max_step = steady.empty() ? 0 : *std::max_element(steady.begin(), steady.end());
  const std::vector<double> base_steady = SteadySteps(baseline);
  out["baseline"] = CheckJson(baseline);
  out["baseline"]["p99_step_ms"] = p99;
  out["baseline"]["max_step_ms"] =
      base_steady.empty() ? 0 : *std::max_element(base_steady.begin(), base_steady.end());
  out["baseline"]["max_step_over_p99"] =
      p99 > 0 ? out["baseline"]["max_step_ms"].get<double>() / p99 : 0;
  out["migration"] = CheckJson(migrated);
  out["migration"]["p99_step_ms"] = Percentile(steady, 0.99);
  out["migration"]["max_step_ms"] = max_step;
  out["migration"]["max_step_at"] =
      std::max_element(migrated.step_ms.begin(), migrated.step_ms.end()) - migrated.step_ms.begin();
  out["migration"]["migrations"] = migrations;
  out["max_step_over_p99"] = p99 > 0 ? max_step / p99 : 0;
  // The same over the steps from each PREPARE to one past its switch (copies and switches).
  double worst_migrating = 0;
  for (const auto& m : migrations) {
    worst_migrating = std::max(worst_migrating, m["max_step_ms_while_migrating"].get<double>());
  }
  out["max_step_while_migrating_over_p99"] = p99 > 0 ? worst_migrating / p99 : 0;
  out["tokens_lost"] = migrated.tokens_lost + migrated.tokens_duplicated;
  out["checksum_mismatches"] = migrated.checksum_mismatches + migrated.token_mismatches;
  out["mixed_epoch_steps"] = migrated.mixed_epoch_steps;
  out["bytes_moved"] = migrated.bytes_in;
  out["bytes_moved_between_ranks"] = migrated.bytes_sent;
  out["bytes_minimum"] = bytes_minimum;
  std::vector<double> p2s;
  for (const auto& m : migrations) {
    if (m["switched"].get<bool>()) p2s.push_back(m["prepare_to_switch_ms"].get<double>());
  }
  out["prepare_to_switch_ms"] = p2s;

  if (o.sigkill) {
    // A slow transfer (rate-capped), rank 2 SIGKILLed 150 ms after PREPARE, restarted 300 ms
    // later; then one more migration with the restarted agent.
    MigrationBenchOptions k = o;
    const int kill_at = std::max(10, o.steps / 4);
    // Room after the restart for the mesh to re-form and one more (rate-capped) migration.
    k.steps = std::max(o.steps, kill_at + static_cast<int>(5 * o.steps_per_second));
    MigrationTestDaemon daemon(DaemonOptions(k, topo));
    GRACE_RETURN_IF_ERROR(daemon.Start());
    const uint64_t expert_bytes = static_cast<uint64_t>(3) * o.ffn * o.hidden * sizeof(float);
    GRACE_ASSIGN_OR_RETURN(RunSetup setup, WriteConfigs(k, topo, o.work_dir + "/sigkill",
                                                        daemon.port(), 4.0 * expert_bytes));
    Cluster cluster;
    GRACE_RETURN_IF_ERROR(cluster.Start(o.agent_binary, setup));
    GRACE_RETURN_IF_ERROR(daemon.WaitForAgents(topo.ranks(), o.timeout));
    std::mt19937 rng(o.seed + 1);
    GRACE_RETURN_IF_ERROR(daemon.WaitForStep(kill_at, o.timeout));
    const RankId victim = std::clamp(o.kill_rank, 0, topo.ranks() - 1);
    Placement next;
    do {
      next = RandomReplacement(daemon.placement(), topo, o.moves_per_layer + 2, rng);
    } while (next == daemon.placement());
    const Epoch epoch_before = daemon.epoch();
    GRACE_ASSIGN_OR_RETURN(MigrationOutcome killed, daemon.Migrate(next, o.timeout, [&] {
      std::this_thread::sleep_for(milliseconds(150));
      KillAgentProcess(cluster.pids[victim]);
      cluster.pids[victim] = 0;
    }));
    const auto restart_at = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(milliseconds(300));
    GRACE_ASSIGN_OR_RETURN(cluster.pids[victim],
                           StartAgentProcess(o.agent_binary, setup.configs[victim]));
    GRACE_RETURN_IF_ERROR(daemon.WaitForAgents(topo.ranks(), o.timeout));
    const double rejoin_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - restart_at)
            .count();
    const uint64_t resumed_at = daemon.newest_step();
    GRACE_RETURN_IF_ERROR(daemon.WaitForStep(resumed_at + 10, o.timeout));
    const Epoch victim_serves = daemon.serving_epoch().at("agent" + std::to_string(victim));
    const Epoch current = daemon.epoch();
    Placement after;
    do {
      after = RandomReplacement(daemon.placement(), topo, o.moves_per_layer, rng);
    } while (after == daemon.placement());
    GRACE_ASSIGN_OR_RETURN(MigrationOutcome later, daemon.Migrate(after, o.timeout));
    const auto joined = daemon.joined_at_epoch();
    GRACE_RETURN_IF_ERROR(cluster.Wait(o.timeout));
    GRACE_ASSIGN_OR_RETURN(RunCheck rc, CheckRun(k, topo, setup.dir));
    out["sigkill"] = CheckJson(rc);
    out["sigkill"]["killed_rank"] = victim;
    out["sigkill"]["killed_migration_aborted"] = !killed.switched;
    out["sigkill"]["abort_reason"] = killed.abort_reason;
    out["sigkill"]["epoch_kept"] = epoch_before;
    out["sigkill"]["restart_to_rejoin_ms"] = rejoin_ms;
    out["sigkill"]["restarted_hello_epoch"] = joined.at("agent" + std::to_string(victim));
    out["sigkill"]["rejoined_serving_epoch"] = victim_serves;
    out["sigkill"]["current_epoch_at_rejoin"] = current;
    out["sigkill"]["next_migration_switched"] = later.switched;
    out["sigkill"]["next_migration_abort_reason"] = later.abort_reason;
    out["sigkill"]["next_migration_prepare_to_switch_ms"] = later.prepare_to_switch_ms;
    out["sigkill"]["steps"] = k.steps;
    out["sigkill"]["next_migration_epoch"] = later.epoch;
  }
  if (own_dir) std::filesystem::remove_all(o.work_dir);
  return out;
}

}  // namespace grace
