#include "agent/local_replay.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include <nlohmann/json.hpp>

#include "agent/dense_reference.h"
#include "agent/local_cluster.h"
#include "agent/replay.h"
#include "agent/weights_file.h"
#include "core/native_trace.h"

namespace grace {

StatusOr<LocalReplayResult> RunLocalReplay(const LocalReplayOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(o.work_dir, ec);
  if (ec) return Unavailable(o.work_dir + ": " + ec.message());
  GRACE_ASSIGN_OR_RETURN(NativeTraceReader reader, NativeTraceReader::Open(o.trace_path));
  const std::vector<LayerId> layer_ids = reader.info().layer_ids;
  const ModelShape& shape = o.shape;
  const ExpertWeights weights = GenerateExpertWeights(shape, o.weights_seed);
  const std::string weights_path = o.work_dir + "/experts.safetensors";
  GRACE_RETURN_IF_ERROR(WriteExpertWeightsFile(weights_path, weights, layer_ids));
  const std::string placement_path = o.work_dir + "/placement.json";
  {
    const Placement p = o.placement.num_layers() > 0
                            ? o.placement
                            : DefaultPlacement(o.topology, shape.num_experts, layer_ids);
    std::ofstream(placement_path) << PlacementToJson(p, o.topology);
  }
  GRACE_ASSIGN_OR_RETURN(int port, PickFreePort());
  const int ranks = o.topology.ranks();
  std::vector<std::string> configs;
  for (int r = 0; r < ranks; ++r) {
    const std::string path = o.work_dir + "/agent" + std::to_string(r) + ".toml";
    std::ofstream out(path);
    out << "[cluster]\nnodes = " << o.topology.nodes
        << "\nranks_per_node = " << o.topology.gpus_per_node
        << "\nslots_per_rank = " << o.topology.slots_per_gpu << "\n[agent]\nfirst_rank = " << r
        << "\n[transport]\nrendezvous = \"127.0.0.1:" << port << "\"\n"
        << "[model]\nexperts = " << shape.num_experts << "\ntop_k = " << shape.top_k
        << "\nhidden = " << shape.hidden << "\nffn = " << shape.ffn
        << "\nlayers = " << shape.num_layers << "\n[weights]\nfile = \"" << weights_path
        << "\"\n[placement]\nfile = \"" << placement_path << "\"\n[replay]\ntrace = \""
        << o.trace_path << "\"\nseed = " << o.seed << "\n[output]\ndir = \"" << o.work_dir
        << "\"\nwrite_outputs = true\n";
    if (!out) return Unavailable(path + ": cannot write");
    configs.push_back(path);
  }
  GRACE_ASSIGN_OR_RETURN(std::vector<int> codes,
                         RunAgentProcesses(o.agent_binary, configs, o.timeout));
  for (int r = 0; r < ranks; ++r) {
    if (codes[r] != 0) {
      return Internal("grace-agent rank " + std::to_string(r) + " exited with " +
                      std::to_string(codes[r]) + " (config " + configs[r] + ")");
    }
  }

  LocalReplayResult result;
  result.lossless = true;
  std::map<int64_t, std::vector<float>> got;
  for (int r = 0; r < ranks; ++r) {
    const std::string base = o.work_dir + "/rank" + std::to_string(r);
    std::ifstream in(base + ".outputs", std::ios::binary);
    int64_t token;
    std::vector<float> x(shape.hidden);
    while (in.read(reinterpret_cast<char*>(&token), sizeof token)) {
      in.read(reinterpret_cast<char*>(x.data()), sizeof(float) * shape.hidden);
      if (!got.emplace(token, x).second && result.lossless) {
        result.lossless = false;
        result.mismatch = "token " + std::to_string(token) + " output by two ranks";
      }
    }
    std::ifstream summary_file(base + ".summary.json");
    nlohmann::json s = nlohmann::json::parse(summary_file, nullptr, false);
    if (s.is_discarded()) return DataLoss(base + ".summary.json: not JSON");
    StepTimes& t = result.mean_rank_times;
    t.gate += s["gate_s"].get<double>() / ranks;
    t.route += s["route_s"].get<double>() / ranks;
    t.permute += s["permute_s"].get<double>() / ranks;
    t.dispatch += s["dispatch_s"].get<double>() / ranks;
    t.ffn += s["ffn_s"].get<double>() / ranks;
    t.combine += s["combine_s"].get<double>() / ranks;
    result.wall_s = std::max(result.wall_s, s["wall_s"].get<double>());
    result.remote_bytes_sent += s["remote_bytes_sent"].get<uint64_t>();
  }

  TraceStep step;
  double change = 0;
  while (true) {
    GRACE_ASSIGN_OR_RETURN(bool more, reader.Next(&step));
    if (!more) break;
    const int n = step.tokens.num_tokens;
    std::vector<int32_t> rows(n);
    std::iota(rows.begin(), rows.end(), 0);
    std::vector<float> x(static_cast<size_t>(n) * shape.hidden);
    for (int t = 0; t < n; ++t) {
      GenerateHidden(o.seed, result.tokens + t, shape.hidden,
                     &x[static_cast<size_t>(t) * shape.hidden]);
    }
    const std::vector<float> x0 = x;
    DenseForward(weights, &step.tokens, rows.data(), n, x.data());
    for (int t = 0; t < n; ++t) {
      const int64_t token = result.tokens + t;
      auto it = got.find(token);
      if (it == got.end()) {
        if (result.lossless) result.mismatch = "token " + std::to_string(token) + " missing";
        result.lossless = false;
        continue;
      }
      for (int c = 0; c < shape.hidden; ++c) {
        const float ref = x[static_cast<size_t>(t) * shape.hidden + c];
        const double err = std::fabs(it->second[c] - ref);
        change += std::fabs(ref - x0[static_cast<size_t>(t) * shape.hidden + c]);
        result.max_abs_error = std::max(result.max_abs_error, err);
        if (!(err <= 1e-4 * (1.0 + std::fabs(ref))) && result.lossless) {
          result.lossless = false;
          std::ostringstream msg;
          msg << "token " << token << " element " << c << ": " << it->second[c] << " vs reference "
              << ref;
          result.mismatch = msg.str();
        }
      }
    }
    result.tokens += n;
    ++result.steps;
  }
  if (static_cast<int64_t>(got.size()) != result.tokens && result.lossless) {
    result.lossless = false;
    result.mismatch =
        std::to_string(got.size()) + " outputs for " + std::to_string(result.tokens) + " tokens";
  }
  result.mean_abs_moe_change =
      result.tokens > 0 ? change / (static_cast<double>(result.tokens) * shape.hidden) : 0;
  return result;
}

}  // namespace grace
