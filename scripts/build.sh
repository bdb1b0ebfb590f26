#!/usr/bin/env bash
# Configures and builds grace into build/ (Release-with-debug-info, Ninja). Extra arguments go to
# the CMake configure step, e.g. scripts/build.sh -DGRACE_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${GRACE_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja "$@" >/dev/null
cmake --build build -j "$jobs"
