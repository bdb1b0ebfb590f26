#!/usr/bin/env bash
# grace running live on loopback until SIGINT or SIGTERM: graced and 2 grace-agents x 2 CPU
# ranks replaying a drifting workload in a loop, migrating experts as it drifts. Used by
# scripts/demo.sh and the browser tests; expects a build (scripts/build.sh).
#
# The workload: real OLMoE-1B-7B routing that drifts arxiv -> book -> c4 (expert counts from
# $GRACE_TRACES_DIR, sampled into tokens by `gracectl trace from-scenario --match-shares`
# config/demo/olmoe_domains_live.toml) when those traces are there, else grace's synthetic
# drifting trace.
#
# Environment (defaults): GRACE_LIVE_DIR (build/live), GRACE_BUILD_DIR (build),
# GRACE_TRACES_DIR (../shared/traces/real), GRACE_HTTP_PORT (8750), GRACE_AGENTS_PORT (8751),
# GRACE_RENDEZVOUS_PORT (29500), GRACE_MIGRATION_PORT (29600), GRACE_STEPS_PER_SECOND (10),
# GRACE_COOLDOWN_S (5), GRACE_AGENT_PREFIX (node: the agents are node0 and node1),
# GRACE_CLUSTER_SECRET and GRACE_API_TOKEN (demo values).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${GRACE_BUILD_DIR:-build}
live=${GRACE_LIVE_DIR:-build/live}
traces=${GRACE_TRACES_DIR:-../shared/traces/real}
http_port=${GRACE_HTTP_PORT:-8750}
agents_port=${GRACE_AGENTS_PORT:-8751}
rendezvous_port=${GRACE_RENDEZVOUS_PORT:-29500}
migration_port=${GRACE_MIGRATION_PORT:-29600}
steps_per_second=${GRACE_STEPS_PER_SECOND:-10}
cooldown_s=${GRACE_COOLDOWN_S:-5}
agent_prefix=${GRACE_AGENT_PREFIX:-node}
export GRACE_CLUSTER_SECRET=${GRACE_CLUSTER_SECRET:-demo-secret}
export GRACE_API_TOKEN=${GRACE_API_TOKEN:-demo-token}
ctl=$build/tools/gracectl

rm -rf "$live/state" "$live/agent0" "$live/agent1"
mkdir -p "$live/agent0" "$live/agent1"

# The workload and the model shape it implies.
olmoe="$traces/olmoe-and-mixtral-domain-counts/olmoe__expert_counts__arxiv.json"
if [[ -f "$olmoe" ]]; then
  workload="real OLMoE-1B-7B routing, arxiv -> book -> c4 (layers 0, 7, 15)"
  trace="$live/olmoe_domains.gtrace"
  experts=64 top_k=8 layer_ids="[0, 7, 15]" num_layers=3 slots=20
  if [[ ! -s "$trace" ]]; then
    "$ctl" trace from-scenario --scenario config/demo/olmoe_domains_live.toml \
      --layers 0,7,15 --match-shares -o "$trace.tmp" >/dev/null
    mv "$trace.tmp" "$trace"
  fi
else
  workload="grace's synthetic drifting trace (no real traces at $traces)"
  trace="$live/synthetic_drift.gtrace"
  experts=32 top_k=4 layer_ids="[0, 1]" num_layers=2 slots=10
  if [[ ! -s "$trace" ]]; then
    "$ctl" trace synth --experts 32 --top-k 4 --layers 2 --steps 1800 --tokens-per-step 1024 \
      --phases 6 --seed 11 -o "$trace" >/dev/null
  fi
fi

cat >"$live/graced.toml" <<TOML
[daemon]
http = "127.0.0.1:$http_port"
agents = "127.0.0.1:$agents_port"
state_dir = "$live/state"
[agents]
heartbeat_ms = 200
report_ms = 1000
[topology]
nodes = 2
gpus_per_node = 2
slots_per_gpu = $slots
# graced plans for GPU-sized experts (OLMoE's hidden 2048, expert FFN 1024); the CPU agents
# below run the same routing with a small hidden size so the demo fits a laptop.
[model]
num_experts = $experts
top_k = $top_k
layers = $layer_ids
hidden = 2048
expert_ffn = 1024
[policy]
interval_s = 1
cooldown_s = $cooldown_s
horizon_intervals = 30
TOML
for a in 0 1; do
  cat >"$live/agent$a.toml" <<TOML
[cluster]
nodes = 2
ranks_per_node = 2
slots_per_rank = $slots
[agent]
first_rank = $((a * 2))
local_ranks = 2
[transport]
rendezvous = "127.0.0.1:$rendezvous_port"
[model]
experts = $experts
top_k = $top_k
hidden = 64
ffn = 128
layers = $num_layers
[replay]
trace = "$trace"
steps_per_second = $steps_per_second
loop = true
[daemon]
address = "127.0.0.1:$agents_port"
agent_id = "$agent_prefix$a"
[migration]
rendezvous = "127.0.0.1:$migration_port"
[output]
dir = "$live/agent$a"
TOML
done

pids=()
stop() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM
"$build/daemon/graced" --config "$live/graced.toml" >"$live/graced.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "live: graced did not start; see $live/graced.log" >&2; exit 1; }
  sleep 0.1
done
for a in 0 1; do
  "$build/agent/grace-agent" --config "$live/agent$a.toml" >"$live/agent$a.log" 2>&1 &
  pids+=($!)
done
echo "live: workload: $workload"
echo "live: web UI    http://127.0.0.1:$http_port/   (API token for changes: \$GRACE_API_TOKEN)"
echo "live: REST API  http://127.0.0.1:$http_port/api/v1/status, metrics /metrics"
echo "live: logs and state in $live"
# Runs until stopped; a process that exits on its own ends the run.
wait -n "${pids[@]}" || true
echo "live: a process exited; see $live/*.log" >&2
exit 1
