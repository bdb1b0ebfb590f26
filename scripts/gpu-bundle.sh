#!/usr/bin/env bash
# scripts/gpu-bundle.sh [DIR]: packs the GPU tests and gracectl, built here, for a GPU machine
# that cannot build grace itself (no Debian -dev packages, no network: the image of a lent GPU
# machine holds CUDA, NCCL in Python's packages, CMake and ninja, but not Eigen, spdlog, Boost or
# SQLite's headers). `scripts/gpu-check.sh --bundle DIR` runs what this packs.
#
# DIR (default .gpu-bundle, git-ignored) gets:
#   bin/      the GPU test binaries and gracectl, stripped (about 12 MB)
#   lib/      the shared libraries they need that are neither CUDA's, NCCL's nor the C runtime's
#             (spdlog, fmt, toml++, OpenSSL, SQLite, ...): the GPU machine may not have them
#   glibc/    this machine's loader, C and C++ runtime: used only where the GPU machine's own are
#             older than the ones these binaries were linked against
#   MANIFEST  the commit, the CUDA architectures and what each binary is
# CUDA's own libraries (cudart, cuBLAS, cuBLASLt) and NCCL are not packed (NCCL alone is over
# 200 MB): gpu-check.sh finds the GPU machine's.
#
# Environment: GRACE_BUILD_DIR (default build, configured by scripts/build.sh with CUDA found),
# GRACE_JOBS (default nproc), GRACE_BUNDLE_NO_BUILD=1 (pack what is built, build nothing: the
# dry-run test, inside a ctest run).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu-bundle}
build=${GRACE_BUILD_DIR:-build}
jobs=${GRACE_JOBS:-$(nproc)}

# shellcheck source=scripts/gpu-targets.sh
. scripts/gpu-targets.sh
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  echo "gpu-bundle: $build/ is not configured: run scripts/build.sh first" >&2
  exit 1
fi
nvcc=$(sed -n 's/^set(CMAKE_CUDA_COMPILER "\(.*\)")$/\1/p' "$build"/CMakeFiles/*/CMakeCUDACompiler.cmake \
  2>/dev/null | head -n 1)
if [[ -z "$nvcc" ]]; then
  echo "gpu-bundle: $build/ was configured without CUDA (nvcc not found): nothing to bundle" >&2
  exit 1
fi
if [[ ${GRACE_BUNDLE_NO_BUILD:-0} != 1 ]]; then
  cmake --build "$build" -j "$jobs" --target "${gpu_targets[@]}"
fi

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/glibc"
for t in "${gpu_targets[@]}"; do
  path=$(find "$build" -type f -name "$t" -perm -u+x -not -path '*/CMakeFiles/*' | head -n 1)
  if [[ -z "$path" ]]; then
    echo "gpu-bundle: $t was not built under $build/" >&2
    exit 1
  fi
  strip -o "$out/bin/$t" "$path"
done

# What the GPU machine supplies itself: the kernel's vDSO, CUDA's and NCCL's libraries and the
# driver's. The C runtime goes to glibc/ (a fallback only).
provided='^(linux-vdso|libcuda\.|libcudart\.|libcublas\.|libcublasLt\.|libnccl\.|libnvidia-)'
c_runtime='^(ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so'
for b in "$out"/bin/*; do
  # Lines "soname => /path (address)"; a "not found" here is a broken build, not a bundle's job.
  if ldd "$b" | grep -q 'not found'; then
    echo "gpu-bundle: $b needs a library this machine lacks:" >&2
    ldd "$b" | grep 'not found' >&2
    exit 1
  fi
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r soname path; do
  if [[ "$soname" =~ $provided ]]; then continue; fi
  if [[ "$soname" =~ $c_runtime ]]; then
    cp -L "$path" "$out/glibc/$soname"
  else
    cp -L "$path" "$out/lib/$soname"
  fi
done
loader=$(ldd "$out/bin/kernels_test" | awk '/ld-linux-x86-64/ {print $1}')
cp -L "$loader" "$out/glibc/ld-linux-x86-64.so.2"

# The device code's architectures, from the compile commands (sm_90 for an H100 or H200).
archs=$(grep -o -- '--generate-code=arch=compute_[0-9a-z]*,code=[][a-z_0-9,]*' "$build/build.ninja" \
  2>/dev/null | sed 's/^--generate-code=//' | sort -u | tr '\n' ' ' || true)
{
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -n 1)"
  echo "cuda device code ${archs:-unknown}; $("$nvcc" --version | tail -n 1)"
  for b in "$out"/bin/*; do echo "bin $(basename "$b") $(stat -c %s "$b") bytes"; done
} >"$out/MANIFEST"
echo "gpu-bundle: $out/ holds $(ls "$out/bin" | wc -l) binaries and $(ls "$out/lib" | wc -l)" \
  "libraries, $(du -sh "$out" | cut -f1) in all"
echo "gpu-bundle: on the GPU machine run: scripts/gpu-check.sh --bundle $out"
