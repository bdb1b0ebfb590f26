// The GPU data path's figures (issue 19, "Figures to reach"), measured on CUDA device 0:
//   per shape (OLMoE: 64 slots, hidden 2048, ffn 1024, 8,192 tokens x top-8 = 65,536 rows;
//   DeepSeek-V3 rank: 9 slots, hidden 7168, ffn 2048, 8,192 routed rows):
//     grouped_tflops   the bf16 grouped expert FFN (kernels/cuda_grouped_ffn.h) on
//                      device-resident rows, median of `repeats` timed with CUDA events
//     gemm_tflops      one cublasGemmEx of equal FLOPs (bf16 in and out, fp32 compute)
//     ffn_vs_gemm      grouped_tflops / gemm_tflops (target >= 0.6)
//     run_ms           the CUDA ExpertBackend's Run from float32 host rows to float32 host
//                      rows (bf16 conversion on the CPU, pinned copies, one sync)
//   the whole layer on one GPU (agent/cuda_moe_layer.h) at the OLMoE shape, gate to combine
//   (layer.olmoe; 8,192 tokens, 64 slots):
//     step_ms          host wall time of one step: x to the device, the layer, x back
//     layer_ms         device time from the layer's first kernel to its last (CUDA events),
//                      including the gaps where the device waits for the host's dispatch layout
//     ffn_ms           the grouped FFN alone on the same rows per slot; layer_vs_ffn the ratio
//     host_*_ms        the host's time per phase of Run (queuing; the waits show in route)
//   the whole layer while a migration copies on the same GPU (migration.olmoe): 400 steps
//   steady, then 400 while RunRankDeviceTransfers ([migration].transport = "nccl") copies 8
//   experts into spare device slots round after round, paced by the steps as in the agent:
//     p99_during_over_p99_steady  p99 step time during over steady (target <= 1.10)
//     copy_rounds, copy_bytes, copy_paused_s   what the copies did meanwhile
// A section that fails holds {"error": why} in place of its figures and is listed in "errors";
// the other sections still run. Run by `gracectl bench datapath --backend cuda [--json]`, which
// exits 1 when "errors" is not empty. Without a GPU (or in a build without CUDA) it returns
// Unavailable naming why; it never crashes. Timings are reported, never asserted.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace grace {

struct CudaDatapathBenchOptions {
  int repeats = 10;
  uint64_t seed = 5;
};

StatusOr<nlohmann::json> RunCudaDatapathBench(const CudaDatapathBenchOptions& options);

}  // namespace grace
