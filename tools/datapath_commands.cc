// gracectl bench datapath [--backend cpu|cuda] [--json] [--json-out FILE]: the data path's
// figures (bench/datapath_bench.h; with --backend cuda the GPU figures of
// bench/datapath_cuda_bench.h).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "bench/datapath_bench.h"
#include "bench/datapath_cuda_bench.h"
#include "tools/commands.h"

namespace grace::tools {
namespace {

// --json-out FILE, opened before the benchmark runs so that a bad path fails at once; the
// figures' JSON goes into it whatever is printed.
class JsonOut {
 public:
  explicit JsonOut(const std::string& path) : path_(path) {
    if (path_.empty()) return;
    out_.open(path_);
    if (!out_) Fail();
  }
  void Write(const nlohmann::json& j) {
    if (path_.empty()) return;
    out_ << j.dump(2) << "\n";
    out_.flush();
    if (!out_) Fail();
  }

 private:
  [[noreturn]] void Fail() const {
    std::cerr << "gracectl bench datapath: --json-out " << path_ << ": cannot write\n";
    throw CommandExit{2};
  }
  std::string path_;
  std::ofstream out_;
};

void RunCuda(const CudaDatapathBenchOptions& options, bool json, JsonOut& json_out) {
  auto result = RunCudaDatapathBench(options);
  if (!result.ok()) {
    std::cerr << "gracectl bench datapath --backend cuda: " << result.status().message() << "\n";
    throw CommandExit{1};
  }
  const nlohmann::json& j = *result;
  json_out.Write(j);
  const bool failed = j.contains("errors") && !j["errors"].empty();
  if (json) {
    std::cout << j.dump(2) << "\n";
    if (failed) throw CommandExit{1};
    return;
  }
  std::printf("device: %s (sm %s)\n", j["device"]["name"].get<std::string>().c_str(),
              j["device"]["compute_capability"].get<std::string>().c_str());
  auto measured = [](const nlohmann::json& section) { return !section.contains("error"); };
  for (const auto& [name, f] : j["ffn"].items()) {
    if (!measured(f)) continue;
    std::printf(
        "%-17s grouped bf16 FFN %.1f TFLOP/s (%.3f ms), one GEMM %.1f TFLOP/s: ratio %.2f; "
        "Run from host %.2f ms\n",
        name.c_str(), f["grouped_tflops"].get<double>(), f["grouped_ms"].get<double>(),
        f["gemm_tflops"].get<double>(), f["ffn_vs_gemm"].get<double>(), f["run_ms"].get<double>());
  }
  if (j.contains("ffn_vs_gemm_min")) {
    std::printf("lowest ratio %.2f (target >= 0.6)\n", j["ffn_vs_gemm_min"].get<double>());
  }
  for (const auto& [name, l] : j["layer"].items()) {
    if (!measured(l)) continue;
    std::printf(
        "%-17s whole layer on one GPU (gate to combine): %.2f ms per step (x in and out), "
        "%.2f ms on the device; the grouped FFN alone %.2f ms (layer / FFN %.2f)\n",
        name.c_str(), l["step_ms"].get<double>(), l["layer_ms"].get<double>(),
        l["ffn_ms"].get<double>(), l["layer_vs_ffn"].get<double>());
  }
  for (const auto& [name, m] : j["migration"].items()) {
    if (!measured(m)) continue;
    std::printf(
        "%-17s while a migration copies on the GPU: p99 step %.2f ms, steady %.2f ms: ratio "
        "%.3f (target <= 1.10); %d copy rounds, %.2f GB\n",
        name.c_str(), m["step_p99_during_ms"].get<double>(), m["step_p99_steady_ms"].get<double>(),
        m["p99_during_over_p99_steady"].get<double>(), m["copy_rounds"].get<int>(),
        m["copy_bytes"].get<double>() / 1e9);
  }
  if (failed) {
    for (const auto& e : j["errors"]) {
      std::cerr << "gracectl bench datapath --backend cuda: " << e.get<std::string>() << "\n";
    }
    throw CommandExit{1};
  }
}

}  // namespace

void AddDatapathCommands(CLI::App& /*app*/, CLI::App& bench) {
  struct Flags {
    bool json = false;
    std::string json_out;
    std::string backend = "cpu";
    DatapathBenchOptions options;
    CudaDatapathBenchOptions cuda;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = bench.add_subcommand(
      "datapath", "expert FFN vs GEMM, replica selection rate, TCP all-to-all-v, lossless replay");
  cmd->add_flag("--json", flags->json, "print one JSON object");
  cmd->add_option("--json-out", flags->json_out,
                  "also write that JSON object to this file (what is printed stays as asked)");
  cmd->add_option("--backend", flags->backend,
                  "cpu: the CPU figures and the replay; cuda: the bf16 grouped expert FFN on GPU 0 "
                  "at the OLMoE and DeepSeek-V3 shapes against one cuBLAS GEMM (fails without a "
                  "GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--repeats", flags->cuda.repeats, "timed repeats per CUDA figure (median)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--experts", flags->options.experts, "experts (FFN and routing figures)")
      ->capture_default_str();
  cmd->add_option("--top-k", flags->options.top_k, "top-k")->capture_default_str();
  cmd->add_option("--hidden", flags->options.hidden, "hidden size")->capture_default_str();
  cmd->add_option("--ffn", flags->options.ffn, "expert FFN size")->capture_default_str();
  cmd->add_option("--tokens-per-rank", flags->options.tokens_per_rank, "tokens per rank")
      ->capture_default_str();
  cmd->add_option("--trace-dir", flags->options.trace_dir,
                  "real traces folder (default: $GRACE_TRACES_DIR or ../shared/traces/real)");
  cmd->add_option("--agent", flags->options.agent_binary,
                  "grace-agent binary (default: $GRACE_AGENT_BINARY or the build tree's)");
  cmd->callback([flags] {
    JsonOut json_out(flags->json_out);
    if (flags->backend == "cuda") {
      RunCuda(flags->cuda, flags->json, json_out);
      return;
    }
    auto result = RunDatapathBench(flags->options);
    if (!result.ok()) {
      std::cerr << "gracectl bench datapath: " << result.status().ToString() << "\n";
      throw CommandExit{1};
    }
    const nlohmann::json& j = *result;
    json_out.Write(j);
    if (flags->json) {
      std::cout << j.dump(2) << "\n";
    } else {
      std::printf("expert FFN vs plain GEMM:  %.2f  (grouped %.1f GFLOP/s, GEMM %.1f GFLOP/s)\n",
                  j["ffn_vs_gemm"].get<double>(), j["ffn"]["grouped_gflops"].get<double>(),
                  j["ffn"]["gemm_gflops"].get<double>());
      std::printf("replica selection:         %.3g decisions/s on one core\n",
                  j["route_decisions_per_s"].get<double>());
      std::printf("TCP all-to-all-v, 4 ranks: %.3g bytes/s aggregate on loopback\n",
                  j["a2a_bytes_per_s"].get<double>());
      std::printf("replay lossless:           %s\n", j["lossless"].get<bool>() ? "yes" : "NO");
      if (j["replay"].contains("step_ms")) {
        const auto& s = j["replay"]["step_ms"];
        std::printf(
            "replay step ms:            gate %.3f route %.3f permute %.3f dispatch %.3f ffn %.3f "
            "combine %.3f (total %.3f)\n",
            s["gate"].get<double>(), s["route"].get<double>(), s["permute"].get<double>(),
            s["dispatch"].get<double>(), s["ffn"].get<double>(), s["combine"].get<double>(),
            s["total"].get<double>());
      } else {
        std::printf("replay:                    %s\n", j["replay"].dump().c_str());
      }
      std::printf("CUDA:                      %s\n", j["cuda"]["note"].get<std::string>().c_str());
    }
    if (!j["lossless"].get<bool>()) throw CommandExit{1};
  });
}

}  // namespace grace::tools
