#include "bench/migration_run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "agent/dense_reference.h"
#include "agent/local_cluster.h"
#include "agent/replay.h"

namespace grace {

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

StatusOr<RunSetup> WriteConfigs(const MigrationBenchOptions& o, const Topology& topo,
                                const std::string& dir, int daemon_port, double max_bytes_per_s,
                                int ranks_per_agent) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return Unavailable(dir + ": " + ec.message());
  GRACE_ASSIGN_OR_RETURN(int port, PickFreePortRange(1));
  GRACE_ASSIGN_OR_RETURN(int migration_port, PickFreePortRange(8));
  RunSetup setup{dir, {}};
  for (int r = 0; r < topo.ranks(); r += ranks_per_agent) {
    const std::string path = dir + "/agent" + std::to_string(r) + ".toml";
    std::ofstream out(path);
    out << "[cluster]\nnodes = " << topo.nodes << "\nranks_per_node = " << topo.gpus_per_node
        << "\nslots_per_rank = " << topo.slots_per_gpu << "\n[agent]\nfirst_rank = " << r
        << "\nlocal_ranks = " << ranks_per_agent << "\nbackend = \"" << o.backend << "\""
        << "\n[transport]\nrendezvous = \"127.0.0.1:" << port
        << "\"\nconnect_timeout_ms = " << o.connect_timeout_ms
        << "\n[model]\nexperts = " << o.experts << "\ntop_k = " << o.top_k
        << "\nhidden = " << o.hidden << "\nffn = " << o.ffn << "\nlayers = " << o.layers
        << "\n[weights]\nseed = " << o.seed << "\n[replay]\nsteps = " << o.steps
        << "\ntokens_per_rank = " << o.tokens_per_rank
        << "\nsteps_per_second = " << o.steps_per_second << "\nseed = " << o.seed + 100
        << "\n[daemon]\naddress = \"127.0.0.1:" << daemon_port
        << "\"\ncluster_secret = \"grace-test-secret\"\ntls = \""
        << AgentChannelTlsName(o.agent_tls) << "\"\nagent_id = \"agent" << r
        << "\"\n[migration]\nrendezvous = \"127.0.0.1:" << migration_port
        << "\"\nchunk_bytes = 16384\nmax_bytes_per_s = " << max_bytes_per_s
        << (o.spare_slots >= 0 ? "\nspare_slots = " + std::to_string(o.spare_slots) : "")
        << "\n[output]\ndir = \"" << dir << "\"\nwrite_outputs = true\n";
    if (!out) return Unavailable(path + ": cannot write");
    setup.configs.push_back(path);
  }
  return setup;
}

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
  // The CUDA backend's bf16 weights (its tests' tolerance); the CPU backend is float32.
  const bool bf16 = o.backend == "cuda";
  constexpr double kBf16Tolerance = 3e-2;
  std::vector<float> ref(static_cast<size_t>(T) * h), x_in;
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
      if (bf16) x_in = ref;
      DenseForward(weights, nullptr, nullptr, T, ref.data());
      double ref_sum = 0, ref_abs = 0, moe_abs = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        ref_sum += ref[i];
        ref_abs += std::fabs(ref[i]);
        if (bf16) moe_abs += std::fabs(ref[i] - x_in[i]);
      }
      // float32 on both sides: the sums agree to rounding; bf16 weights: to the tolerance of
      // the MoE part of each value.
      const double sum_tolerance =
          bf16 ? kBf16Tolerance * moe_abs + 1e-5 * ref_abs + 1e-6 : 1e-5 * ref_abs + 1e-6;
      auto it = sums.find(s);
      if (it == sums.end()) {
        ++rc.checksum_lines_missing;
        ++rc.checksum_mismatches;
      } else if (std::fabs(it->second - ref_sum) > sum_tolerance) {
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
        double err2 = 0, moe2 = 0;
        for (int c = 0; c < h; ++c) {
          const size_t i = static_cast<size_t>(t) * h + c;
          const float want = ref[i];
          const double err = std::fabs(g->second[c] - want);
          rc.max_abs_error = std::max(rc.max_abs_error, err);
          if (bf16) {
            err2 += err * err;
            moe2 += (want - x_in[i]) * double(want - x_in[i]);
          } else {
            bad |= !(err <= 1e-4 * (1.0 + std::fabs(want)));
          }
        }
        if (bf16) bad = !(std::sqrt(err2) <= kBf16Tolerance * std::sqrt(moe2) + 1e-5);
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

Cluster::~Cluster() {
  for (int p : pids) KillAgentProcess(p);
}

Status Cluster::Start(const std::string& binary, const RunSetup& setup) {
  for (const std::string& c : setup.configs) {
    GRACE_ASSIGN_OR_RETURN(int pid, StartAgentProcess(binary, c));
    pids.push_back(pid);
  }
  return Status::Ok();
}

Status Cluster::Wait(milliseconds timeout) {
  for (size_t i = 0; i < pids.size(); ++i) {
    GRACE_ASSIGN_OR_RETURN(int code, WaitAgentProcess(pids[i], timeout));
    pids[i] = 0;
    if (code != 0) {
      return Internal("grace-agent process " + std::to_string(i) + " exited with " +
                      std::to_string(code));
    }
  }
  return Status::Ok();
}

MigrationTestDaemonOptions DaemonOptions(const MigrationBenchOptions& o, const Topology& topo) {
  MigrationTestDaemonOptions d;
  d.topology = topo;
  d.placement = DefaultPlacement(topo, o.experts, [&] {
    std::vector<LayerId> ids;
    for (int l = 0; l < o.layers; ++l) ids.push_back(l);
    return ids;
  }());
  d.bytes_per_expert = static_cast<uint64_t>(3) * o.ffn * o.hidden * sizeof(float);
  d.agent_tls = o.agent_tls;
  d.coordinator.ready_timeout_ms = 15000;
  d.coordinator.switch_margin_steps =
      std::max<uint64_t>(8, static_cast<uint64_t>(std::ceil(o.steps_per_second * 0.2)));
  return d;
}

}  // namespace grace
