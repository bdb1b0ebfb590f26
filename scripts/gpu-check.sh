#!/usr/bin/env bash
# scripts/gpu-check.sh [--bundle DIR]: one command for a machine with an NVIDIA GPU. Runs every
# GPU test and `gracectl bench datapath --backend cuda --json`, and prints the figures (grouped
# FFN against one GEMM, the whole layer per step against the FFN alone, and the step time while
# a migration copies; also written to gpu-figures.json), then the CUDA kernels' tests under
# compute-sanitizer's memcheck where it is installed. Sized for under 6 minutes on one H200,
# build included.
#
# Two ways to get the binaries:
#   (no flag)     builds them here in a separate tree (build-gpu/, CUDA required,
#                 CMAKE_CUDA_ARCHITECTURES from nvidia-smi or 90): a machine with grace's build
#                 dependencies (scripts/setup.sh)
#   --bundle DIR  runs the binaries scripts/gpu-bundle.sh packed on another machine: a GPU
#                 machine without grace's -dev packages or a network (the lent H200's image). The
#                 GPU machine's own CUDA runtime, cuBLAS and NCCL (from /usr/local/cuda, the
#                 loader's cache or Python's nvidia-* packages) are found and used.
# A failing test does not stop the figures: the script runs everything, then exits 1 if any test
# or figure failed. On a machine without a usable GPU it runs the GPU tests (which report
# themselves skipped), says that no GPU was found and exits 0, so it can be dry-run anywhere.
#
# Environment: GRACE_GPU_BUILD_DIR (default build-gpu), GRACE_JOBS (default nproc),
# GRACE_CUDA_ARCH (overrides detection), GRACE_GPU_OUT (where gpu-figures.json and the logs go;
# default the build tree or the bundle). A fresh machine needs scripts/setup.sh first, except
# with --bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle)
      [[ $# -ge 2 ]] || { echo "gpu-check: --bundle needs a directory" >&2; exit 2; }
      bundle=$2
      shift 2
      ;;
    *) echo "gpu-check: unknown argument '$1' (usage: scripts/gpu-check.sh [--bundle DIR])" >&2; exit 2 ;;
  esac
done
build=${GRACE_GPU_BUILD_DIR:-build-gpu}
jobs=${GRACE_JOBS:-$(nproc)}
arch=${GRACE_CUDA_ARCH:-}
start=$SECONDS
phase() { echo "gpu-check: [$((SECONDS - start)) s] $*"; }
failures=()

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
# NCCL explains its own failures (a VM's network or topology) in the output.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# Every rank of these tests is on this machine: NCCL's bootstrap over loopback, whatever other
# interfaces a VM has (or lacks).
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo}
mkdir -p "${GRACE_GPU_OUT:-${bundle:-$build}}"
out_dir=$(cd "${GRACE_GPU_OUT:-${bundle:-$build}}" && pwd)

# shellcheck source=scripts/gpu-targets.sh
. scripts/gpu-targets.sh
if [[ -z "$bundle" ]]; then
  if ! command -v nvcc >/dev/null 2>&1 && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
    echo "gpu-check: nvcc not found (looked on PATH and in /usr/local/cuda/bin): cannot build" >&2
    exit 1
  fi
  phase "GPU: $gpu_name; CUDA architecture $arch; build tree $build; $jobs jobs"
  cmake -S . -B "$build" -G Ninja -DGRACE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
  cmake --build "$build" -j "$jobs" --target "${gpu_targets[@]}"
  phase "built ${gpu_targets[*]}"
  ctest --test-dir "$build" -R "$gpu_tests_regex" --output-on-failure --no-tests=error \
    --timeout 300 || failures+=("tests (ctest above)")
  gracectl=("$build/tools/gracectl")
  kernels_test=("$build/tests/kernels/cuda_kernels_test")
else
  [[ -d "$bundle/bin" ]] || {
    echo "gpu-check: $bundle/bin not found: make it with scripts/gpu-bundle.sh $bundle" >&2
    exit 2
  }
  phase "GPU: $gpu_name; prebuilt binaries from $bundle/"
  if [[ "$gpu" -eq 1 ]]; then
    nvidia-smi --query-gpu=name,driver_version,compute_mode,memory.total --format=csv |
      sed 's/^/gpu-check: /'
  fi
  sed 's/^/gpu-check: bundle: /' "$bundle/MANIFEST" || true
  # The first directory holding each library among the usual places: the loader's cache,
  # /usr/local/cuda, the driver's mount and Python's nvidia-* wheels.
  find_lib() {
    local name=$1 hit
    hit=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}')
    if [[ -z "$hit" ]]; then
      hit=$(find /usr/local/cuda/ /usr/local/nvidia/ /opt/ /usr/lib/ /usr/local/lib/ \
        -name "$name" \( -type f -o -type l \) -print -quit 2>/dev/null || true)
    fi
    [[ -n "$hit" ]] && dirname "$hit"
  }
  libpath="$(cd "$bundle/lib" && pwd)"
  # libcuda.so.1 is the driver's, loaded by the CUDA runtime only when there is one.
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2 libcuda.so.1; do
    dir=$(find_lib "$lib" || true)
    if [[ -z "$dir" && "$lib" == libcuda.so.1 ]]; then
      echo "gpu-check: libcuda.so.1 (the driver's) not found: the GPU tests will skip"
      continue
    elif [[ -z "$dir" ]]; then
      echo "gpu-check: $lib not found on this machine (loader cache, /usr/local/cuda, /opt," \
        "/usr/lib): the binaries cannot start" >&2
      exit 1
    fi
    echo "gpu-check: $lib from $dir"
    [[ ":$libpath:" == *":$dir:"* ]] || libpath="$libpath:$dir"
  done
  # Only the bundle's binaries (and the grace-agent processes a test starts) see these
  # libraries; this script's own tools keep the machine's.
  libpath="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  run=(env "LD_LIBRARY_PATH=$libpath")
  # Built on another distribution: where this one's C or C++ runtime is older than the one the
  # binaries were linked against, the bundle's own loader and runtime start them.
  agent_wrapper=""
  if ! probe=$("${run[@]}" "$bundle/bin/kernels_test" --gtest_list_tests 2>&1 >/dev/null); then
    if grep -q -E 'GLIBC|GLIBCXX|CXXABI' <<<"$probe"; then
      echo "gpu-check: this machine's C runtime is older than the bundle's ($probe): using the" \
        "bundle's loader"
      glibc=$(cd "$bundle/glibc" && pwd)
      run=("$glibc/ld-linux-x86-64.so.2" --library-path "$glibc:$libpath")
      # The grace-agent processes a test spawns go through the same loader.
      agent_wrapper="$out_dir/grace-agent-via-bundle-loader"
      printf '#!/bin/sh\nexec %q --library-path %q %q "$@"\n' "$glibc/ld-linux-x86-64.so.2" \
        "$glibc:$libpath" "$(cd "$bundle/bin" && pwd)/grace-agent" >"$agent_wrapper"
      chmod +x "$agent_wrapper"
    else
      echo "gpu-check: the bundle's kernels_test does not start: $probe" >&2
      exit 1
    fi
  fi
  filter="*${gpu_tests_regex//|/*:*}*"
  log="$out_dir/gpu-tests.log"
  : >"$log"
  # The live-migration test starts grace-agent processes: the bundle's.
  GRACE_AGENT_BINARY=${agent_wrapper:-$(cd "$bundle/bin" && pwd)/grace-agent}
  export GRACE_AGENT_BINARY
  for t in "${gpu_targets[@]}"; do
    [[ "$t" == gracectl || "$t" == grace-agent ]] && continue
    phase "$t"
    rc=0
    timeout 150 "${run[@]}" "$bundle/bin/$t" --gtest_filter="$filter" --gtest_color=no \
      2>&1 | tee -a "$log" || rc=$?
    # Under pipefail the pipeline's status is the test's own (tee's is 0).
    [[ $rc -eq 0 ]] || failures+=("$t (rc $rc; $log)")
  done
  phase "skipped (each says why; on one GPU the two-rank NCCL tests need two):"
  grep '^\[  SKIPPED \] [A-Za-z].* ms)$' "$log" || echo "gpu-check: none skipped"
  grep '^\[  FAILED  \] [A-Za-z].* ms)$' "$log" || true
  # A failed live-migration run leaves its work directory (configs, outputs, agents' logs).
  shopt -s nullglob
  left=(/tmp/grace_migration_bench_* /tmp/grace_cuda_replay_*)
  if [[ ${#left[@]} -gt 0 ]]; then
    tar czf "$out_dir/failed-runs.tgz" "${left[@]}" 2>/dev/null &&
      echo "gpu-check: work directories of failed runs in $out_dir/failed-runs.tgz"
  fi
  shopt -u nullglob
  gracectl=("${run[@]}" "$bundle/bin/gracectl")
  kernels_test=("${run[@]}" "$bundle/bin/cuda_kernels_test")
fi
phase "tests done"

if [[ "$gpu" -eq 0 ]]; then
  echo "gpu-check: no GPU on this machine (nvidia-smi missing or finds none): the GPU path was" \
    "compiled and its tests skipped themselves; nothing ran on a GPU"
  if [[ ${#failures[@]} -gt 0 ]]; then
    printf 'gpu-check: FAILED: %s\n' "${failures[@]}" >&2
    exit 1
  fi
  exit 0
fi

figures="$out_dir/gpu-figures.json"
# A hung device call must end the check, not stall it. gracectl prints the figures and writes
# their JSON; it exits 1 when a section failed, and the JSON still holds the sections measured.
timeout 300 "${gracectl[@]}" bench datapath --backend cuda --json-out "$figures" ||
  failures+=("gracectl bench datapath --backend cuda (rc $?; $figures)")
phase "figures written to $figures"

# Last, so the figures never wait on it: the tests of grace's own CUDA kernels under
# compute-sanitizer's memcheck (out-of-bounds and misaligned accesses, API errors), at most
# 2 minutes. GRACE_GPU_SANITIZE=0 skips it.
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [[ ${GRACE_GPU_SANITIZE:-1} == 1 && -x "$sanitizer" && -z "${agent_wrapper:-}" ]]; then
  phase "compute-sanitizer --tool memcheck: cuda_kernels_test"
  sanitized="$out_dir/memcheck.log"
  rc=0
  # env (when the bundle's libraries are needed) goes first: the sanitizer starts the test.
  prefix=() test_bin=("${kernels_test[@]}")
  if [[ "${kernels_test[0]}" == env ]]; then
    prefix=("${kernels_test[@]:0:2}") test_bin=("${kernels_test[@]:2}")
  fi
  # grace's own kernels (kernels/cuda/*.cu) and the staging copies; cuBLAS's GEMMs under
  # memcheck would take most of the time for little.
  timeout 120 "${prefix[@]}" "$sanitizer" --tool memcheck --error-exitcode 99 \
    "${test_bin[@]}" --gtest_color=no \
    --gtest_filter='*GateTopK*:*RoutePermuteCombine*:*StagedSpareSlot*' >"$sanitized" 2>&1 ||
    rc=$?
  tail -n 5 "$sanitized"
  case $rc in
    0) echo "gpu-check: memcheck: no errors" ;;
    124) echo "gpu-check: memcheck did not finish within 120 s (not counted as a failure)" ;;
    99) failures+=("compute-sanitizer memcheck found errors ($sanitized)") ;;
    *) failures+=("cuda_kernels_test under compute-sanitizer (rc $rc; $sanitized)") ;;
  esac
fi
phase "done"
if [[ ${#failures[@]} -gt 0 ]]; then
  printf 'gpu-check: FAILED: %s\n' "${failures[@]}" >&2
  exit 1
fi
