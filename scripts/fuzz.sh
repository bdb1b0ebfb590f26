#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (address sanitizer) in build-fuzz/ and runs each for a
# bounded time (GRACE_FUZZ_SECONDS, default 20), starting from seed inputs written by the native
# trace writer, by wire_frame_seeds and a few REST policy bodies. Exits non-zero on a crash, leak
# or timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${GRACE_FUZZ_SECONDS:-20}
jobs=${GRACE_JOBS:-$(nproc)}
targets=(native_trace_fuzz wire_frame_fuzz stack_dump_fuzz rest_json_fuzz)

cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DGRACE_CUDA=OFF -DGRACE_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$jobs" --target "${targets[@]}" wire_frame_seeds

# Seeds: small valid traces of each kind, so mutations start from well-formed files.
corpus=build-fuzz/corpus/native_trace_fuzz
mkdir -p "$corpus"
if [[ -x build/tools/gracectl ]]; then
  build/tools/gracectl trace synth --experts 8 --top-k 2 --layers 2 --steps 3 \
    --tokens-per-step 4 --phases 1 -o "$corpus/seed_tokens.gtrace" >/dev/null || echo "fuzz: no seed from gracectl"
  build/tools/gracectl trace synth --experts 300 --top-k 2 --layers 1 --steps 2 \
    --tokens-per-step 3 --phases 1 --no-weights -o "$corpus/seed_wide.gtrace" >/dev/null || true
  counts=../shared/traces/real/olmoe-and-mixtral-domain-counts/mistral__expert_counts_crosslayer__c4.json
  if [[ -f $counts ]]; then
    build/tools/gracectl trace convert "$counts" -o "$corpus/seed_counts.gtrace" >/dev/null || true
  fi
fi

# Wire frames: one of each message, and load reports with co-activation and traffic sections.
mkdir -p build-fuzz/corpus/wire_frame_fuzz
build-fuzz/tests/fuzz/wire_frame_seeds build-fuzz/corpus/wire_frame_fuzz

# Stack dumps: the committed fixtures, each behind its mode byte (0: .pt, 1: its pickle, 2: .npy).
corpus=build-fuzz/corpus/stack_dump_fuzz
mkdir -p "$corpus"
for f in tests/fixtures/*.pt; do
  { printf '\x00'; cat "$f"; } >"$corpus/pt_$(basename "$f")"
  { printf '\x01'; python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [m for m in z.namelist() if m.endswith("/data.pkl")][0]; sys.stdout.buffer.write(z.read(n))' "$f"; } \
    >"$corpus/pkl_$(basename "$f")" || true
done
{ printf '\x02'; cat tests/fixtures/vllm_routed_experts.npy; } >"$corpus/npy_routed_experts"
# Policy bodies: the defaults, a valid patch, and the bad values the REST tests send.
corpus=build-fuzz/corpus/rest_json_fuzz
mkdir -p "$corpus"
printf '{}' >"$corpus/empty.json"
printf '{"cooldown_s": 12, "forecast_model": "holt"}' >"$corpus/patch.json"
printf '{"interval_s": 3600, "cooldown_s": -5, "bogus": 1}' >"$corpus/bad.json"
printf '{"planner": "grace", "min_gain_ms": 1e308, "horizon_s": [1]}' >"$corpus/types.json"

for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  "build-fuzz/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "build-fuzz/corpus/$t" 2>&1 | tail -n 15
  status=${PIPESTATUS[0]}
  if [[ $status -ne 0 ]]; then
    echo "fuzz: $t failed (exit $status); the crashing input is in the working directory"
    exit 1
  fi
done
echo "fuzz: all targets ran clean"
