#!/usr/bin/env bash
# gpu_check_dry_run_test: scripts/gpu-bundle.sh packs this build's GPU binaries, and
# scripts/gpu-check.sh --bundle runs them: on a machine without a GPU every GPU test reports
# itself skipped, none fails, and the script says that no GPU was found and exits 0. The two
# scripts are what a lent GPU machine runs; this keeps them working between such loans.
#
# Usage: gpu_check_dry_run_test.sh BUILD_DIR SOURCE_DIR
# On a machine with a GPU it exits 77 (skipped): there gpu-check.sh itself is the test.
set -euo pipefail
build=$1 source=$2

fail() {
  echo "gpu_check_dry_run_test: FAIL: $*" >&2
  exit 1
}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check_dry_run_test: SKIP: this machine has a GPU: run scripts/gpu-check.sh"
  exit 77
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

GRACE_BUILD_DIR=$build GRACE_BUNDLE_NO_BUILD=1 "$source/scripts/gpu-bundle.sh" "$scratch/bundle" \
  >"$scratch/bundle.log" 2>&1 || { cat "$scratch/bundle.log"; fail "gpu-bundle.sh failed"; }
for b in cuda_kernels_test cuda_moe_layer_test nccl_transport_test gracectl; do
  [[ -x "$scratch/bundle/bin/$b" ]] || fail "the bundle lacks bin/$b"
done
grep -q '^commit ' "$scratch/bundle/MANIFEST" || fail "the bundle's MANIFEST names no commit"
[[ -n "$(ls -A "$scratch/bundle/lib")" ]] || fail "the bundle packed no library"

rc=0
GRACE_GPU_OUT=$scratch/out "$source/scripts/gpu-check.sh" --bundle "$scratch/bundle" \
  >"$scratch/check.log" 2>&1 || rc=$?
[[ $rc -eq 0 ]] || { cat "$scratch/check.log"; fail "gpu-check.sh --bundle exited $rc"; }
grep -q 'no GPU on this machine' "$scratch/check.log" || fail "gpu-check.sh did not say no GPU"
log=$scratch/out/gpu-tests.log
[[ -s "$log" ]] || fail "gpu-check.sh wrote no tests' log"
skipped=$(grep -c '^\[  SKIPPED \] Cuda.* ms)$' "$log" || true)
[[ $skipped -ge 5 ]] || fail "only $skipped CUDA tests reported themselves skipped"
if grep -q '^\[  FAILED  \]' "$log"; then
  grep '^\[  FAILED  \]' "$log" >&2
  fail "a test failed"
fi
grep -q 'Bf16Test.RoundsToNearestEvenAndKeepsSpecials' "$log" || fail "the CPU twins' bf16 test did not run"
echo "gpu_check_dry_run_test: ok ($skipped CUDA tests skipped, none failed)"
