#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, build, format check, every CTest test, then the
# bounded fuzz runs (scripts/fuzz.sh: clang + libFuzzer in build-fuzz/). Tests that read
# ../shared/traces/real skip without it, except under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
./scripts/format.sh
(cd build && ctest --output-on-failure -j "${GRACE_JOBS:-$(nproc)}")
if [[ -x scripts/fuzz.sh ]]; then ./scripts/fuzz.sh; fi
