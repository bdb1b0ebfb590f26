#include "bench/datapath_bench.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include <Eigen/Dense>

#include "agent/local_cluster.h"
#include "agent/local_replay.h"
#include "agent/replay.h"
#include "core/native_trace.h"
#include "core/trace_import.h"
#include "kernels/expert_backend.h"
#include "kernels/expert_weights.h"
#include "kernels/select_replicas.h"
#include "migrate/tcp_transport.h"
#if defined(GRACE_HAVE_CUDA)
#include "kernels/cuda_device.h"
#endif

namespace grace {
namespace {

using Clock = std::chrono::steady_clock;
using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <typename F>
double BestSeconds(int repeats, F f) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto t = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t).count());
  }
  return best;
}

// Grouped expert FFN (the CPU backend) against one GEMM triple over all rows.
nlohmann::json MeasureFfn(const DatapathBenchOptions& o) {
  ModelShape shape{.num_experts = o.experts,
                   .top_k = o.top_k,
                   .hidden = o.hidden,
                   .ffn = o.ffn,
                   .num_layers = 1};
  const int rows = o.tokens_per_rank * o.top_k;
  ExpertWeights w = GenerateExpertWeights(shape, 1);
  auto backend = MakeCpuExpertBackend(shape, 1, o.experts);
  for (int e = 0; e < o.experts; ++e) {
    (void)backend->LoadSlot(0, e, w.W1(0, e), w.W3(0, e), w.W2(0, e));
  }
  // Rows per expert from uniform random routing.
  std::mt19937 rng(3);
  std::vector<int32_t> counts(o.experts, 0), offsets(o.experts + 1, 0);
  for (int i = 0; i < rows; ++i) ++counts[rng() % o.experts];
  for (int e = 0; e < o.experts; ++e) offsets[e + 1] = offsets[e] + counts[e];
  RowMajor x = RowMajor::Random(rows, o.hidden), y(rows, o.hidden);
  (void)backend->Run(0, x.data(), offsets.data(), y.data());  // warm-up: buffers grow
  const double grouped =
      BestSeconds(o.repeats, [&] { (void)backend->Run(0, x.data(), offsets.data(), y.data()); });
  Eigen::Map<const RowMajor> w1(w.W1(0, 0), o.ffn, o.hidden), w3(w.W3(0, 0), o.ffn, o.hidden),
      w2(w.W2(0, 0), o.hidden, o.ffn);
  RowMajor g(rows, o.ffn), u(rows, o.ffn);
  auto plain = [&] {
    g.noalias() = x * w1.transpose();
    u.noalias() = x * w3.transpose();
    g = (g.array() / (1.0f + (-g.array()).exp())) * u.array();
    y.noalias() = g * w2.transpose();
  };
  plain();
  const double gemm = BestSeconds(o.repeats, plain);
  const double flops = 6.0 * rows * o.hidden * o.ffn;
  return {{"rows", rows},
          {"grouped_s", grouped},
          {"gemm_s", gemm},
          {"grouped_gflops", flops / grouped * 1e-9},
          {"gemm_gflops", flops / gemm * 1e-9},
          {"ffn_vs_gemm", gemm / grouped}};
}

// Replica selection on one core: 2 nodes x 2 ranks, contiguous experts plus replicas.
nlohmann::json MeasureRoute(const DatapathBenchOptions& o) {
  Topology topo;
  topo.nodes = 2;
  topo.gpus_per_node = 2;
  topo.slots_per_gpu = o.experts / 4 + 4;
  RoutingTableBuilder builder(1, topo, DefaultPlacement(topo, o.experts, {0}));
  auto table = builder.Build();
  if (!table.ok()) return {{"error", table.status().ToString()}};
  const int tokens = 1 << 17;
  std::mt19937 rng(7);
  std::vector<int32_t> ids(static_cast<size_t>(tokens) * o.top_k);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % o.experts);
  std::vector<int64_t> token_ids(tokens);
  for (int t = 0; t < tokens; ++t) token_ids[t] = t;
  std::vector<SlotId> slots(ids.size());
  const double s = BestSeconds(5, [&] {
    SelectReplicas(**table, 0, 1, ids.data(), token_ids.data(), tokens, o.top_k, 11, 0,
                   slots.data());
  });
  return {{"decisions", ids.size()}, {"seconds", s}, {"route_decisions_per_s", ids.size() / s}};
}

// TCP all-to-all-v on loopback: ranks as threads, each its own TcpTransport.
StatusOr<nlohmann::json> MeasureAllToAll(const DatapathBenchOptions& o) {
  GRACE_ASSIGN_OR_RETURN(int port, PickFreePort());
  const int n = o.a2a_ranks;
  std::vector<Status> results(n);
  std::vector<double> seconds(n, 0);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      TcpTransportOptions to;
      to.rank = r;
      to.size = n;
      to.rendezvous_port = static_cast<uint16_t>(port);
      auto t = TcpTransport::Connect(to);
      if (!t.ok()) {
        results[r] = t.status();
        return;
      }
      std::vector<char> send(o.a2a_bytes_per_peer * n, 'x'), recv(send.size());
      std::vector<size_t> bytes(n, o.a2a_bytes_per_peer);
      results[r] = (*t)->AllToAllV(send.data(), bytes, recv.data(), bytes);  // warm-up
      if (results[r].ok()) results[r] = (*t)->Barrier();
      const auto start = Clock::now();
      for (int i = 0; i < o.a2a_rounds && results[r].ok(); ++i) {
        results[r] = (*t)->AllToAllV(send.data(), bytes, recv.data(), bytes);
      }
      seconds[r] = std::chrono::duration<double>(Clock::now() - start).count();
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : results) GRACE_RETURN_IF_ERROR(s);
  const double wall = *std::max_element(seconds.begin(), seconds.end());
  const double bytes = static_cast<double>(o.a2a_rounds) * n * (n - 1) * o.a2a_bytes_per_peer;
  return nlohmann::json{{"ranks", n},
                        {"bytes_per_peer", o.a2a_bytes_per_peer},
                        {"rounds", o.a2a_rounds},
                        {"seconds", wall},
                        {"a2a_bytes_per_s", bytes / wall}};
}

StatusOr<nlohmann::json> MeasureReplay(const DatapathBenchOptions& o) {
  std::string dir = o.trace_dir;
  if (dir.empty()) {
    const char* env = std::getenv("GRACE_TRACES_DIR");
    dir = env != nullptr && *env ? env : std::string(GRACE_SOURCE_DIR) + "/../shared/traces/real";
  }
  const std::string q = dir + "/qwen1.5-moe-a2.7b-gsm8k/";
  GRACE_ASSIGN_OR_RETURN(Trace trace, ImportTraces({q + "moe_layer0.jsonl", q + "moe_layer8.jsonl",
                                                    q + "moe_layer12.jsonl"}));
  const std::string work = o.work_dir.empty()
                               ? (std::filesystem::temp_directory_path() /
                                  ("grace_bench_datapath_" + std::to_string(::getpid())))
                                     .string()
                               : o.work_dir;
  std::filesystem::create_directories(work);
  LocalReplayOptions r;
  r.agent_binary = o.agent_binary.empty() ? FindAgentBinary() : o.agent_binary;
  r.trace_path = work + "/qwen.gtrace";
  GRACE_RETURN_IF_ERROR(WriteNativeTrace(r.trace_path, trace));
  r.work_dir = work;
  r.topology.nodes = 2;
  r.topology.gpus_per_node = 2;
  r.shape = {.num_experts = trace.info.num_experts,
             .top_k = trace.info.top_k,
             .hidden = 256,
             .ffn = 128,
             .num_layers = trace.info.num_layers()};
  r.topology.slots_per_gpu = (r.shape.num_experts + 3) / 4 + 2;
  GRACE_ASSIGN_OR_RETURN(LocalReplayResult res, RunLocalReplay(r));
  if (o.work_dir.empty()) std::filesystem::remove_all(work);
  const double steps = std::max(1, res.steps);
  const StepTimes& t = res.mean_rank_times;
  return nlohmann::json{{"trace", "qwen1.5-moe-a2.7b-gsm8k (3 layers, vLLM JSONL)"},
                        {"processes", 4},
                        {"topology", "2 nodes x 2 ranks, TCP loopback"},
                        {"hidden", r.shape.hidden},
                        {"ffn", r.shape.ffn},
                        {"steps", res.steps},
                        {"tokens", res.tokens},
                        {"wall_s", res.wall_s},
                        {"max_abs_error", res.max_abs_error},
                        {"lossless", res.lossless},
                        {"mismatch", res.mismatch},
                        {"remote_bytes_sent", res.remote_bytes_sent},
                        {"step_ms",
                         {{"gate", 1e3 * t.gate / steps},
                          {"route", 1e3 * t.route / steps},
                          {"permute", 1e3 * t.permute / steps},
                          {"dispatch", 1e3 * t.dispatch / steps},
                          {"ffn", 1e3 * t.ffn / steps},
                          {"combine", 1e3 * t.combine / steps},
                          {"total", 1e3 * t.total() / steps}}}};
}

}  // namespace

StatusOr<nlohmann::json> RunDatapathBench(const DatapathBenchOptions& o) {
  nlohmann::json out;
  out["machine"] = {{"hardware_threads", std::thread::hardware_concurrency()}};
  nlohmann::json ffn = MeasureFfn(o);
  out["ffn"] = ffn;
  out["ffn"]["shape"] = {{"experts", o.experts},
                         {"top_k", o.top_k},
                         {"hidden", o.hidden},
                         {"ffn", o.ffn},
                         {"tokens_per_rank", o.tokens_per_rank}};
  out["ffn_vs_gemm"] = ffn["ffn_vs_gemm"];
  nlohmann::json route = MeasureRoute(o);
  out["route"] = route;
  out["route_decisions_per_s"] = route.value("route_decisions_per_s", 0.0);
  GRACE_ASSIGN_OR_RETURN(nlohmann::json a2a, MeasureAllToAll(o));
  out["a2a"] = a2a;
  out["a2a_bytes_per_s"] = a2a["a2a_bytes_per_s"];
  auto replay = MeasureReplay(o);
  if (replay.ok()) {
    out["replay"] = *replay;
    out["lossless"] = (*replay)["lossless"];
  } else {
    out["replay"] = {{"error", replay.status().ToString()}};
    out["lossless"] = false;
  }
#if defined(GRACE_HAVE_CUDA)
  std::string why;
  const bool gpu = CudaDeviceAvailable(&why);
  out["cuda"] = {
      {"compiled", true},
      {"ran", false},
      {"note",
       gpu ? "a GPU is present: gracectl bench datapath --backend cuda gives the GPU figures"
           : "CUDA kernels compiled but not run: " + why}};
#else
  out["cuda"] = {{"compiled", false}, {"ran", false}, {"note", "built without CUDA"}};
#endif
  out["targets"] = {{"ffn_vs_gemm", 0.6}, {"route_decisions_per_s", 5e7}, {"a2a_bytes_per_s", 1e9}};
  return out;
}

}  // namespace grace
