#!/usr/bin/env bash
# promtool_rules_test: `promtool check rules` and `promtool test rules` on grace's alert rules.
# Usage: promtool_rules_test.sh SOURCE_DIR
# Without /usr/bin/promtool it exits 77 (skipped), or fails under CI=true.
set -euo pipefail
source=$1
promtool=/usr/bin/promtool
if [[ ! -x $promtool ]]; then
  if [[ ${CI:-} == true ]]; then
    echo "promtool_rules_test: FAIL: $promtool not found (apt-get install prometheus)" >&2
    exit 1
  fi
  echo "promtool_rules_test: SKIP: $promtool not found (apt-get install prometheus)"
  exit 77
fi
"$promtool" check rules "$source/config/prometheus/grace-alerts.yml"
# The test file names the rules relative to itself.
cd "$source/config/prometheus"
"$promtool" test rules grace-alerts.test.yml
