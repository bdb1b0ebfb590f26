#!/usr/bin/env bash
# scripts/gpu-check.sh: one command for a machine with an NVIDIA GPU. Configures a separate build
# tree (build-gpu/, CUDA required, CMAKE_CUDA_ARCHITECTURES from nvidia-smi or 90), builds only
# the GPU tests and gracectl, runs every GPU test and `gracectl bench datapath --backend cuda
# --json`, and prints the figures (grouped FFN against one GEMM, the whole layer per step
# against the FFN alone, and the step time while a migration copies; also written to
# build-gpu/gpu-figures.json). Sized for under 6 minutes
# on one H200, build included. On a machine without a usable GPU it compiles, runs the
# GPU tests (which report themselves skipped), says that no GPU was found and exits 0, so it can
# be dry-run anywhere nvcc is installed.
#
# Environment: GRACE_GPU_BUILD_DIR (default build-gpu), GRACE_JOBS (default nproc),
# GRACE_CUDA_ARCH (overrides detection). A fresh machine needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${GRACE_GPU_BUILD_DIR:-build-gpu}
jobs=${GRACE_JOBS:-$(nproc)}
arch=${GRACE_CUDA_ARCH:-}
start=$SECONDS
phase() { echo "gpu-check: [$((SECONDS - start)) s] $*"; }

gpu=0
gpu_name="none"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
  if [[ -z "$arch" ]]; then
    # "9.0" -> "90"; empty on drivers too old to report it.
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 |
      tr -d ' .' || true)
  fi
fi
arch=${arch:-90}
if ! command -v nvcc >/dev/null 2>&1 && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "gpu-check: nvcc not found (looked on PATH and in /usr/local/cuda/bin): cannot build" >&2
  exit 1
fi
phase "GPU: $gpu_name; CUDA architecture $arch; build tree $build; $jobs jobs"

cmake -S . -B "$build" -G Ninja -DGRACE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
targets=(cuda_kernels_test cuda_moe_layer_test cuda_replay_test nccl_transport_test
  nccl_migration_channel_test device_migration_executor_test kernels_test gracectl)
cmake --build "$build" -j "$jobs" --target "${targets[@]}"
phase "built ${targets[*]}"

# The GPU tests (the device-to-device migration's included) and the CPU twins' own tests (bf16
# rounding, the CPU expert backend).
ctest --test-dir "$build" \
  -R 'CudaKernelsTest|CudaMoeLayerTest|CudaReplayTest|NcclTransportTest|NcclMigrationChannelTest|DeviceMigrationExecutorTest|Bf16Test|CpuExpertBackendTest' \
  --output-on-failure --no-tests=error --timeout 300
phase "tests done"

if [[ "$gpu" -eq 0 ]]; then
  echo "gpu-check: no GPU on this machine (nvidia-smi missing or finds none): the GPU path was" \
    "compiled and its tests skipped themselves; nothing ran on a GPU"
  exit 0
fi

figures="$build/gpu-figures.json"
# A hung device call must end the check, not stall it.
timeout 300 "$build/tools/gracectl" bench datapath --backend cuda --json | tee "$figures"
phase "figures written to $figures"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$figures" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"device: {j['device']['name']}")
for name, f in j["ffn"].items():
    print(f"{name:17} grouped bf16 FFN {f['grouped_tflops']:.1f} TFLOP/s ({f['grouped_ms']:.3f} ms), "
          f"one GEMM {f['gemm_tflops']:.1f} TFLOP/s, ratio {f['ffn_vs_gemm']:.2f} (target 0.6), "
          f"Run from host {f['run_ms']:.2f} ms")
for name, l in j.get("layer", {}).items():
    print(f"{name:17} whole layer on one GPU (gate to combine) {l['step_ms']:.2f} ms per step "
          f"(x in and out), {l['layer_ms']:.2f} ms on the device; grouped FFN alone "
          f"{l['ffn_ms']:.2f} ms (layer / FFN {l['layer_vs_ffn']:.2f})")
for name, m in j.get("migration", {}).items():
    print(f"{name:17} migration copy on its low-priority stream while steps run: p99 step "
          f"{m['step_p99_during_ms']:.2f} ms during, {m['step_p99_steady_ms']:.2f} ms steady, "
          f"ratio {m['p99_during_over_p99_steady']:.3f} (target 1.10); {m['copy_rounds']} rounds, "
          f"{m['copy_bytes'] / 1e9:.2f} GB copied")
PY
fi
phase "done"
