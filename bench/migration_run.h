// The pieces every live-migration run shares (bench/migration_bench.h, the fault cases of
// bench/migration_faults.cc): agent configs on loopback, the agent processes, the test
// daemon's options, random re-placements, and the check of what the replay wrote against the
// dense reference (agent/dense_reference.h), every rank's (step, epoch) included.
//
// Thread contract: plain functions and values; one caller thread.
#pragma once

#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/migration_bench.h"
#include "bench/migration_daemon.h"
#include "core/placement.h"
#include "core/topology.h"

namespace grace {

// A valid placement a few moves from `p`: swaps of two slots on different ranks and retargets
// of a slot whose expert has another replica.
Placement RandomReplacement(const Placement& p, const Topology& topo, int moves, std::mt19937& rng);

struct RunSetup {
  std::string dir;
  std::vector<std::string> configs;  // one per agent process
};

// One agent.toml per agent process under `dir` (emptied first): `ranks_per_agent` local ranks
// each, the daemon at 127.0.0.1:daemon_port.
StatusOr<RunSetup> WriteConfigs(const MigrationBenchOptions& o, const Topology& topo,
                                const std::string& dir, int daemon_port, double max_bytes_per_s,
                                int ranks_per_agent = 1);

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
                            const std::string& dir);

double Percentile(std::vector<double> v, double q);
// Step times after the first few (connection set-up, buffers growing).
std::vector<double> SteadySteps(const RunCheck& rc);
nlohmann::json CheckJson(const RunCheck& rc);

// The agent processes of a run; the destructor kills what still runs.
struct Cluster {
  std::vector<int> pids;
  ~Cluster();
  Status Start(const std::string& binary, const RunSetup& setup);
  Status Wait(std::chrono::milliseconds timeout);
};

MigrationTestDaemonOptions DaemonOptions(const MigrationBenchOptions& o, const Topology& topo);

}  // namespace grace
