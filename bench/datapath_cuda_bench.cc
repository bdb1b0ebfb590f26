#include "bench/datapath_cuda_bench.h"

#if defined(GRACE_HAVE_CUDA)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <atomic>
#include <thread>

#include "agent/cuda_moe_layer.h"
#include "agent/device_migration_executor.h"
#include "agent/local_cluster.h"
#include "agent/serving_state.h"
#include "agent/slot_staging.h"
#include "kernels/bf16.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_expert_backend.h"
#include "kernels/cuda_grouped_ffn.h"
#include "migrate/tcp_transport.h"
#endif

namespace grace {

#if defined(GRACE_HAVE_CUDA)
namespace {

struct FfnShape {
  const char* name;
  int slots;
  int hidden;
  int ffn;
  int rows;
};

// Owns the stream, cuBLAS handle and events of the reference GEMM and the timers.
class Timer {
 public:
  ~Timer() {
    if (start_ != nullptr) cudaEventDestroy(start_);
    if (stop_ != nullptr) cudaEventDestroy(stop_);
  }
  Status Init() {
    GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&start_), "cudaEventCreate"));
    return CudaStatus(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  // Median milliseconds of `repeats` calls of `enqueue` on `stream`, after two warm-ups.
  template <typename F>
  StatusOr<double> MedianMs(int repeats, cudaStream_t stream, F enqueue) {
    for (int i = 0; i < 2; ++i) GRACE_RETURN_IF_ERROR(enqueue());
    GRACE_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream), "warm-up sync"));
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) {
      GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(start_, stream), "cudaEventRecord"));
      GRACE_RETURN_IF_ERROR(enqueue());
      GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(stop_, stream), "cudaEventRecord"));
      GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventSynchronize(stop_), "cudaEventSynchronize"));
      float elapsed = 0;
      GRACE_RETURN_IF_ERROR(
          CudaStatus(cudaEventElapsedTime(&elapsed, start_, stop_), "cudaEventElapsedTime"));
      ms.push_back(elapsed);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }

 private:
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

struct ReferenceGemm {
  cudaStream_t stream = nullptr;
  cublasHandle_t handle = nullptr;
  ~ReferenceGemm() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    if (handle != nullptr) cublasDestroy(handle);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  Status Init() {
    GRACE_RETURN_IF_ERROR(CudaStatus(cudaStreamCreate(&stream), "cudaStreamCreate"));
    GRACE_RETURN_IF_ERROR(CublasStatus(cublasCreate(&handle), "cublasCreate"));
    return CublasStatus(cublasSetStream(handle, stream), "cublasSetStream");
  }
};

std::vector<uint16_t> RandomBf16(size_t n, float scale, uint64_t seed) {
  std::vector<uint16_t> out(n);
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const float u = static_cast<float>(state >> 40) * 0x1p-24f;  // [0, 1)
    out[i] = FloatToBf16(scale * (2.0f * u - 1.0f));
  }
  return out;
}

std::vector<float> RandomFloats(size_t n, float scale, uint64_t seed) {
  const std::vector<uint16_t> bits = RandomBf16(n, scale, seed);
  std::vector<float> out(n);
  Bf16ToFloats(bits.data(), n, out.data());
  return out;
}

// Rows per slot from uniform random routing.
std::vector<int32_t> RandomOffsets(int slots, int rows, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<int32_t> offsets(slots + 1, 0);
  for (int i = 0; i < rows; ++i) ++offsets[1 + rng() % slots];
  for (int s = 0; s < slots; ++s) offsets[s + 1] += offsets[s];
  return offsets;
}

StatusOr<nlohmann::json> MeasureShape(const FfnShape& f, const CudaDatapathBenchOptions& o) {
  const ModelShape shape{
      .num_experts = f.slots, .top_k = 1, .hidden = f.hidden, .ffn = f.ffn, .num_layers = 1};
  const size_t slot_elements = static_cast<size_t>(f.ffn) * f.hidden;
  const size_t row_elements = static_cast<size_t>(f.rows) * f.hidden;
  // Two distinct experts, loaded alternately: the values do not change the timing.
  std::vector<std::vector<float>> w1, w3, w2;
  for (int e = 0; e < 2; ++e) {
    w1.push_back(RandomFloats(slot_elements, 1.0f / std::sqrt(float(f.hidden)), o.seed + 3 * e));
    w3.push_back(
        RandomFloats(slot_elements, 1.0f / std::sqrt(float(f.hidden)), o.seed + 3 * e + 1));
    w2.push_back(RandomFloats(slot_elements, 1.0f / std::sqrt(float(f.ffn)), o.seed + 3 * e + 2));
  }
  const std::vector<int32_t> offsets = RandomOffsets(f.slots, f.rows, o.seed);
  int min_rows = f.rows, max_rows = 0;
  for (int s = 0; s < f.slots; ++s) {
    min_rows = std::min(min_rows, offsets[s + 1] - offsets[s]);
    max_rows = std::max(max_rows, offsets[s + 1] - offsets[s]);
  }
  Timer timer;
  GRACE_RETURN_IF_ERROR(timer.Init());
  const double flops = 6.0 * f.rows * double(f.hidden) * f.ffn;
  nlohmann::json out = {{"slots", f.slots},
                        {"hidden", f.hidden},
                        {"ffn", f.ffn},
                        {"rows", f.rows},
                        {"rows_per_slot_min", min_rows},
                        {"rows_per_slot_max", max_rows},
                        {"flops", flops}};
  const std::vector<uint16_t> x_host = RandomBf16(row_elements, 1.0f, o.seed + 100);
  {
    // The grouped FFN on device-resident rows.
    GRACE_ASSIGN_OR_RETURN(auto ffn, CudaGroupedFfn::Create(shape, 1, f.slots, 0));
    for (int s = 0; s < f.slots; ++s) {
      GRACE_RETURN_IF_ERROR(
          ffn->LoadSlot(0, s, w1[s % 2].data(), w3[s % 2].data(), w2[s % 2].data()));
    }
    DeviceArray<uint16_t> x, y;
    GRACE_RETURN_IF_ERROR(x.Resize(row_elements));
    GRACE_RETURN_IF_ERROR(y.Resize(row_elements));
    GRACE_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpy(x.data(), x_host.data(), row_elements * sizeof(uint16_t),
                              cudaMemcpyHostToDevice),
                   "cudaMemcpy rows"));
    GRACE_ASSIGN_OR_RETURN(double grouped_ms, timer.MedianMs(o.repeats, ffn->stream(), [&] {
      return ffn->Enqueue(0, offsets.data(), x.data(), y.data());
    }));
    out["grouped_ms"] = grouped_ms;
    out["grouped_tflops"] = flops / (grouped_ms * 1e-3) * 1e-12;
  }
  {
    // One GEMM of equal FLOPs: [rows x hidden] x [hidden x 3 ffn], bf16 in and out, fp32 compute.
    ReferenceGemm ref;
    GRACE_RETURN_IF_ERROR(ref.Init());
    const int m = 3 * f.ffn;
    const std::vector<uint16_t> w_host =
        RandomBf16(static_cast<size_t>(m) * f.hidden, 0.02f, o.seed + 200);
    DeviceArray<uint16_t> w, x, c;
    GRACE_RETURN_IF_ERROR(w.Upload(w_host.data(), w_host.size(), ref.stream));
    GRACE_RETURN_IF_ERROR(x.Upload(x_host.data(), x_host.size(), ref.stream));
    GRACE_RETURN_IF_ERROR(c.Resize(static_cast<size_t>(f.rows) * m));
    const float one = 1.0f, zero = 0.0f;
    GRACE_ASSIGN_OR_RETURN(double gemm_ms, timer.MedianMs(o.repeats, ref.stream, [&] {
      return CublasStatus(
          cublasGemmEx(ref.handle, CUBLAS_OP_T, CUBLAS_OP_N, m, f.rows, f.hidden, &one, w.data(),
                       CUDA_R_16BF, f.hidden, x.data(), CUDA_R_16BF, f.hidden, &zero, c.data(),
                       CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx reference");
    }));
    out["gemm_ms"] = gemm_ms;
    out["gemm_tflops"] = flops / (gemm_ms * 1e-3) * 1e-12;
    out["ffn_vs_gemm"] = gemm_ms / out["grouped_ms"].get<double>();
  }
  {
    // The backend the agent calls: float32 host rows in and out.
    GRACE_ASSIGN_OR_RETURN(auto backend, MakeCudaExpertBackend(shape, 1, f.slots, 0));
    for (int s = 0; s < f.slots; ++s) {
      GRACE_RETURN_IF_ERROR(
          backend->LoadSlot(0, s, w1[s % 2].data(), w3[s % 2].data(), w2[s % 2].data()));
    }
    std::vector<float> in(row_elements), result(row_elements);
    Bf16ToFloats(x_host.data(), row_elements, in.data());
    GRACE_RETURN_IF_ERROR(backend->Run(0, in.data(), offsets.data(), result.data()));  // warm-up
    std::vector<double> ms;
    for (int i = 0; i < std::max(1, o.repeats / 3); ++i) {
      const auto t = std::chrono::steady_clock::now();
      GRACE_RETURN_IF_ERROR(backend->Run(0, in.data(), offsets.data(), result.data()));
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
    }
    std::sort(ms.begin(), ms.end());
    bool finite = true;
    for (float v : result) finite = finite && std::isfinite(v);
    out["run_ms"] = ms[ms.size() / 2];
    out["run_output_finite"] = finite;
  }
  return out;
}

// The whole MoE layer on one GPU (agent/cuda_moe_layer.h), gate to combine, at the OLMoE shape
// (64 experts in 64 slots, top-8, hidden 2048, ffn 1024, 8,192 tokens), against the grouped FFN
// alone on the rows the layer's routing gave each slot.
// The whole MoE layer on one GPU at the OLMoE shape (64 experts, top-8, hidden 2048, ffn 1024,
// 8,192 tokens), on a CUDA expert backend with `spare_slots` spare device slots (a migration's
// staging room); the experts alternate between two distinct weight sets.
struct OlmoeLayer {
  static constexpr int kTokens = 8192;
  const ModelShape shape{
      .num_experts = 64, .top_k = 8, .hidden = 2048, .ffn = 1024, .num_layers = 1};
  std::shared_ptr<const RoutingTable> table;
  std::unique_ptr<TcpTransport> control;
  std::unique_ptr<ExpertBackend> backend;
  CudaGroupedFfn* ffn = nullptr;  // the backend's
  std::unique_ptr<CudaMoeLayer> layer;
  std::vector<float> x0, x;
  std::vector<int64_t> token_ids;

  Status Init(const CudaDatapathBenchOptions& o, int spare_slots) {
    const Topology topo{.nodes = 1, .gpus_per_node = 1, .slots_per_gpu = shape.num_experts};
    Placement placement = Placement::Empty(shape.num_experts, {0}, topo.total_slots());
    for (SlotId s = 0; s < topo.total_slots(); ++s) placement.physical_to_logical[0][s] = s;
    GRACE_ASSIGN_OR_RETURN(table, RoutingTableBuilder(1, topo, placement).Build());
    // One rank: the layer never sends, but takes its rank and size from a transport.
    GRACE_ASSIGN_OR_RETURN(int port, PickFreePort());
    TcpTransportOptions to;
    to.rendezvous_port = static_cast<uint16_t>(port);
    GRACE_ASSIGN_OR_RETURN(control, TcpTransport::Connect(to));
    GRACE_ASSIGN_OR_RETURN(backend,
                           MakeCudaExpertBackend(shape, 1, shape.num_experts, 0, spare_slots));
    ffn = CudaGroupedFfnOf(*backend);
    const size_t slot_elements = static_cast<size_t>(shape.ffn) * shape.hidden;
    std::vector<std::vector<float>> w;  // two distinct experts, loaded alternately
    for (int i = 0; i < 6; ++i) {
      const float fan_in = i % 3 == 2 ? shape.ffn : shape.hidden;
      w.push_back(RandomFloats(slot_elements, 1.0f / std::sqrt(fan_in), o.seed + 10 + i));
    }
    for (int s = 0; s < shape.num_experts; ++s) {
      const int e = 3 * (s % 2);
      GRACE_RETURN_IF_ERROR(backend->LoadSlot(0, s, w[e].data(), w[e + 1].data(), w[e + 2].data()));
    }
    GRACE_ASSIGN_OR_RETURN(
        layer, CudaMoeLayer::Create(shape, shape.num_experts, 1, control.get(), nullptr, ffn));
    const std::vector<float> gate =
        RandomFloats(static_cast<size_t>(shape.num_experts) * shape.hidden,
                     1.0f / std::sqrt(float(shape.hidden)), o.seed + 20);
    GRACE_RETURN_IF_ERROR(layer->LoadGate(0, gate.data()));
    x0 = RandomFloats(static_cast<size_t>(kTokens) * shape.hidden, 1.0f, o.seed + 21);
    x.resize(x0.size());
    token_ids.resize(kTokens);
    for (int t = 0; t < kTokens; ++t) token_ids[t] = t;
    return Status::Ok();
  }
};

StatusOr<nlohmann::json> MeasureLayer(const CudaDatapathBenchOptions& o) {
  OlmoeLayer rig;
  GRACE_RETURN_IF_ERROR(rig.Init(o, 0));
  const ModelShape& shape = rig.shape;
  const int tokens = OlmoeLayer::kTokens;
  CudaMoeLayer* layer = rig.layer.get();
  CudaGroupedFfn* ffn = rig.ffn;
  const RoutingTable* table = rig.table.get();
  const std::vector<float>& x0 = rig.x0;
  std::vector<float>& x = rig.x;
  const std::vector<int64_t>& token_ids = rig.token_ids;
  Timer timer;
  GRACE_RETURN_IF_ERROR(timer.Init());
  cudaEvent_t begin = nullptr, end = nullptr;
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&begin), "cudaEventCreate"));
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&end), "cudaEventCreate"));
  std::vector<double> step_ms, layer_ms;
  StepTimes times;
  Status failed;
  for (int i = 0; i < o.repeats + 2 && failed.ok(); ++i) {
    // Every step starts from the same hidden states: the same routing each time.
    failed = [&]() -> Status {
      const auto t0 = std::chrono::steady_clock::now();
      GRACE_RETURN_IF_ERROR(
          layer->BeginStep(*table, token_ids.data(), tokens, x0.data(), nullptr, nullptr));
      GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(begin, ffn->stream()), "cudaEventRecord"));
      GRACE_RETURN_IF_ERROR(layer->Run(0, static_cast<uint64_t>(i), o.seed, &times));
      GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(end, ffn->stream()), "cudaEventRecord"));
      GRACE_RETURN_IF_ERROR(layer->EndStep(x.data()));
      const double wall =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      float device = 0;
      GRACE_RETURN_IF_ERROR(
          CudaStatus(cudaEventElapsedTime(&device, begin, end), "cudaEventElapsedTime"));
      if (i >= 2) {  // two warm-ups
        step_ms.push_back(wall);
        layer_ms.push_back(device);
      }
      return Status::Ok();
    }();
  }
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  GRACE_RETURN_IF_ERROR(failed);
  std::sort(step_ms.begin(), step_ms.end());
  std::sort(layer_ms.begin(), layer_ms.end());
  // The FFN alone on the same rows per slot.
  const std::vector<int32_t>& pairs = layer->measured().slot_pairs;
  std::vector<int32_t> offsets(pairs.size() + 1, 0);
  for (size_t s = 0; s < pairs.size(); ++s) offsets[s + 1] = offsets[s] + pairs[s];
  const size_t rows = static_cast<size_t>(offsets.back());
  DeviceArray<uint16_t> xin, yout;
  GRACE_RETURN_IF_ERROR(xin.Resize(rows * shape.hidden));
  GRACE_RETURN_IF_ERROR(yout.Resize(rows * shape.hidden));
  GRACE_RETURN_IF_ERROR(CudaStatus(
      cudaMemsetAsync(xin.data(), 0, rows * shape.hidden * sizeof(uint16_t), ffn->stream()),
      "cudaMemsetAsync rows"));
  GRACE_ASSIGN_OR_RETURN(double ffn_ms, timer.MedianMs(o.repeats, ffn->stream(), [&] {
    return ffn->Enqueue(0, offsets.data(), xin.data(), yout.data());
  }));
  bool finite = true;
  for (float v : x) finite = finite && std::isfinite(v);
  const double n = o.repeats + 2;  // the phase times include the warm-ups
  return nlohmann::json{{"experts", shape.num_experts},
                        {"top_k", shape.top_k},
                        {"hidden", shape.hidden},
                        {"ffn", shape.ffn},
                        {"tokens", tokens},
                        {"rows", rows},
                        {"step_ms", step_ms[step_ms.size() / 2]},
                        {"layer_ms", layer_ms[layer_ms.size() / 2]},
                        {"ffn_ms", ffn_ms},
                        {"layer_vs_ffn", layer_ms[layer_ms.size() / 2] / ffn_ms},
                        {"host_route_ms", 1e3 * times.route / n},
                        {"host_permute_ms", 1e3 * times.permute / n},
                        {"host_ffn_enqueue_ms", 1e3 * times.ffn / n},
                        {"host_combine_ms", 1e3 * times.combine / n},
                        {"output_finite", finite}};
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

// The whole layer's step time (OLMoE shape, one GPU) steady, then while a migration copies
// expert weights on this GPU the way [migration].transport = "nccl" does
// (RunRankDeviceTransfers: its own NCCL communicator, formed anew for each round as for each
// migration, on a lowest-priority stream; 4 MiB chunks paced by CopyPacer against this rank's
// step times, with no byte-rate cap, the hardest case): 8 experts into spare device slots
// within the rank (NCCL's send to self; no digest, as for any copy within a rank), over and
// over until the steps are done. Figures: p99 step time during over steady (target at most
// 1.10), and what the copies moved.
StatusOr<nlohmann::json> MeasureMigrationStall(const CudaDatapathBenchOptions& o) {
  const int spares = 8, steps = 400;
  OlmoeLayer rig;
  GRACE_RETURN_IF_ERROR(rig.Init(o, spares));
  const ModelShape& shape = rig.shape;
  const int tokens = OlmoeLayer::kTokens;
  CudaMoeLayer* layer = rig.layer.get();
  ExpertBackend* backend = rig.backend.get();
  const RoutingTable* table = rig.table.get();
  const size_t slot_elements = static_cast<size_t>(shape.ffn) * shape.hidden;
  RankProgress progress;  // what the copies' pacing reads, as a worker publishes it
  StepTimes times;
  // `n` steps; their host wall times in ms (x to the device, the layer, x back).
  auto run_steps = [&](int n, std::vector<double>* out) -> Status {
    for (int i = 0; i < n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      GRACE_RETURN_IF_ERROR(
          layer->BeginStep(*table, rig.token_ids.data(), tokens, rig.x0.data(), nullptr, nullptr));
      GRACE_RETURN_IF_ERROR(layer->Run(0, static_cast<uint64_t>(i), o.seed, &times));
      GRACE_RETURN_IF_ERROR(layer->EndStep(rig.x.data()));
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      const auto us = static_cast<uint64_t>(ms * 1000);
      const uint64_t base = progress.baseline_step_us.load(std::memory_order_relaxed);
      progress.last_step_us.store(us, std::memory_order_relaxed);
      progress.baseline_step_us.store(base == 0 ? us : (base * 31 + us) / 32,
                                      std::memory_order_relaxed);
      out->push_back(ms);
    }
    return Status::Ok();
  };
  std::vector<double> warm, steady, during;
  GRACE_RETURN_IF_ERROR(run_steps(10, &warm));
  GRACE_RETURN_IF_ERROR(run_steps(steps, &steady));

  // Slots 8..15's experts get second copies in place of slots 0..7 (staged, never published).
  std::vector<WireTransfer> transfers;
  const uint64_t expert_bytes = 3 * slot_elements * sizeof(uint16_t);
  for (int k = 0; k < spares; ++k) {
    transfers.push_back({0, static_cast<ExpertId>(k + spares), k + spares, k, expert_bytes});
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bytes{0};
  std::atomic<int> rounds{0};
  Status copy_status;
  double paused_s = 0;
  std::thread copier([&] {
    const SlotMap current = SlotMap::Identity(1, shape.num_experts);
    while (!stop.load() && copy_status.ok()) {
      StatusOr<int> port = PickFreePort();
      if (!port.ok()) {
        copy_status = port.status();
        break;
      }
      DeviceTransferOptions d;
      d.transfer.mesh.rendezvous_port = static_cast<uint16_t>(*port);
      d.transfer.slots_per_rank = shape.num_experts;
      d.transfer.chunk_bytes = 4 << 20;
      d.transfer.max_bytes_per_s = 0;
      d.transfer.step_budget = 1.25;
      d.transfer.progress = &progress;
      d.transfer.cancel = &stop;
      StatusOr<DeviceStagedCopies> r = RunRankDeviceTransfers(d, transfers, *backend, current);
      if (!r.ok()) {
        if (!stop.load()) copy_status = r.status();
        break;
      }
      bytes += r->copies.bytes_in;
      paused_s += r->copies.paused_s;
      ++rounds;
      ReleaseSlots(*backend, r->staging.acquired);  // dropped, as an aborted migration's are
    }
  });
  const Status stepped = run_steps(steps, &during);
  stop = true;
  copier.join();
  GRACE_RETURN_IF_ERROR(stepped);
  GRACE_RETURN_IF_ERROR(copy_status.WithContext("the migration copies"));
  const double p99_steady = Percentile(steady, .99), p99_during = Percentile(during, .99);
  return nlohmann::json{{"steps", steps},
                        {"step_p50_steady_ms", Percentile(steady, .5)},
                        {"step_p99_steady_ms", p99_steady},
                        {"step_p50_during_ms", Percentile(during, .5)},
                        {"step_p99_during_ms", p99_during},
                        {"p99_during_over_p99_steady", p99_during / p99_steady},
                        {"copy_rounds", rounds.load()},
                        {"copy_bytes", bytes.load()},
                        {"copy_paused_s", paused_s},
                        {"copy_max_bytes_per_s", 0}};
}

}  // namespace

StatusOr<nlohmann::json> RunCudaDatapathBench(const CudaDatapathBenchOptions& o) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) return Unavailable("no GPU: " + why);
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(0), "cudaSetDevice"));
  cudaDeviceProp prop{};
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties"));
  int driver = 0, runtime = 0;
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaDriverGetVersion(&driver), "cudaDriverGetVersion"));
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion"));
  nlohmann::json out;
  out["device"] = {
      {"name", prop.name},
      {"compute_capability", std::to_string(prop.major) + "." + std::to_string(prop.minor)},
      {"memory_bytes", prop.totalGlobalMem},
      {"driver_version", driver},
      {"runtime_version", runtime}};
  // A section that fails is recorded as {"error": why} and the others still run: one broken
  // section (an NCCL set-up on an unusual machine, say) must not cost the figures of the rest.
  out["errors"] = nlohmann::json::array();
  auto record = [&out](const char* section, const char* name, StatusOr<nlohmann::json> figures) {
    if (figures.ok()) {
      out[section][name] = std::move(*figures);
      return true;
    }
    const std::string why = figures.status().message();
    out[section][name] = {{"error", why}};
    out["errors"].push_back(std::string(section) + "." + name + ": " + why);
    return false;
  };
  const FfnShape shapes[] = {{"olmoe", 64, 2048, 1024, 8192 * 8},
                             {"deepseek_v3_rank", 9, 7168, 2048, 8192}};
  double worst = 1e30;
  for (const FfnShape& f : shapes) {
    if (record("ffn", f.name, MeasureShape(f, o))) {
      worst = std::min(worst, out["ffn"][f.name]["ffn_vs_gemm"].get<double>());
    }
  }
  if (worst < 1e30) out["ffn_vs_gemm_min"] = worst;
  record("layer", "olmoe", MeasureLayer(o));
  record("migration", "olmoe", MeasureMigrationStall(o));
  out["targets"] = {{"ffn_vs_gemm", 0.6}, {"p99_during_over_p99_steady", 1.10}};
  return out;
}

#else

StatusOr<nlohmann::json> RunCudaDatapathBench(const CudaDatapathBenchOptions&) {
  return Unavailable("no GPU: grace was built without CUDA (nvcc not found at configure time)");
}

#endif

}  // namespace grace
