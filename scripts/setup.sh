#!/usr/bin/env bash
# Installs grace's build and test dependencies: Debian's packages, then the web UI's npm
# packages (the chart library it serves, playwright-core for the browser tests, which drive
# Debian's chromium: no browser is downloaded). Idempotent: when everything is present it only
# checks and returns.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git curl python3
  clang clang-format libclang-rt-14-dev
  libboost-dev libboost-system-dev
  libsqlite3-dev libssl-dev libeigen3-dev libcpp-httplib-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev
  libsystemd-dev systemd  # systemd: systemd-analyze, for tests/install
  prometheus             # prometheus, promtool: tests/ops (scrape, alert rules)
  dpkg-dev lintian       # dpkg-shlibdeps for cpack -G DEB; lintian: tests/install
  nodejs chromium         # the web UI's packages (nodejs brings npm) and its browser tests
)

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all build dependencies present"
fi

# The web UI's packages, pinned by web/package-lock.json. NodeSource's nodejs carries npm,
# Debian's own does not.
if ! command -v npm >/dev/null; then
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends npm
fi
web=$(cd "$(dirname "$0")/../web" && pwd)
if [[ ! -f "$web/node_modules/.package-lock.json" ||
      "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]]; then
  echo "setup: npm ci in web/"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "setup: web UI packages present"
fi
