#!/usr/bin/env bash
# grace running live on loopback until SIGINT or SIGTERM: graced and 2 grace-agents x 2 CPU
# ranks replaying a drifting workload in a loop, migrating experts as it drifts. Used by
# scripts/demo.sh and the browser tests; expects a build (scripts/build.sh).
#
# The workload: real token-level routing from $GRACE_TRACES_DIR (GRACE_LIVE_WORKLOAD: qwen,
# the default, mixtral or olmoe; see below), else grace's synthetic drifting trace.
#
# Environment (defaults): GRACE_LIVE_DIR (build/live), GRACE_BUILD_DIR (build),
# GRACE_TRACES_DIR (../shared/traces/real), GRACE_HTTP_PORT (8750), GRACE_AGENTS_PORT (8751),
# GRACE_RENDEZVOUS_PORT (29500), GRACE_MIGRATION_PORT (29600), GRACE_STEPS_PER_SECOND (10),
# GRACE_COOLDOWN_S (5), GRACE_AGENT_PREFIX (node: the agents are node0 and node1),
# GRACE_LIVE_WORKLOAD (qwen),
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

# The workload and the model shape it implies (GRACE_LIVE_WORKLOAD, default qwen):
#   qwen     real Qwen1.5-MoE-A2.7B tokens (GSM8K; layers 0, 8, 12), replayed as recorded: the
#            agents' co-activation drives grouping, and measured cross-node traffic falls after
#            the first re-placements;
#   mixtral  real Mixtral-8x7B tokens, HumanEval then GSM8K (32 layers x 8 experts): a drift;
#   olmoe    real OLMoE-1B-7B expert counts drifting arxiv -> book -> c4, sampled into tokens
#            (per-expert counts carry no co-activation);
# without the real traces, grace's synthetic drifting trace (clusters of co-activated experts).
workload_kind=${GRACE_LIVE_WORKLOAD:-qwen}
qwen="$traces/qwen1.5-moe-a2.7b-gsm8k"
mixtral="$traces/mixtral-8x7b-instruct-humaneval-gsm8k"
olmoe="$traces/olmoe-and-mixtral-domain-counts/olmoe__expert_counts__arxiv.json"
hidden=2048 expert_ffn=1408
# Recorded token traces have small steps (tens of tokens): a copy pays only over many of them,
# as it would in a few real serving steps of thousands of tokens.
horizon=30 byte_budget_mb=512
if [[ "$workload_kind" == qwen && -f "$qwen/moe_layer0.jsonl" ]]; then
  workload="real Qwen1.5-MoE-A2.7B tokens, GSM8K (layers 0, 8, 12)"
  trace="$live/qwen_gsm8k.gtrace"
  experts=60 top_k=4 layer_ids="[0, 8, 12]" num_layers=3 slots=16 horizon=3000 byte_budget_mb=4096
  if [[ ! -s "$trace" ]]; then
    "$ctl" trace convert "$qwen/moe_layer0.jsonl" "$qwen/moe_layer8.jsonl" \
      "$qwen/moe_layer12.jsonl" -o "$trace.tmp" >/dev/null
    mv "$trace.tmp" "$trace"
  fi
elif [[ "$workload_kind" == mixtral && -f "$mixtral/humaneval_2_routing.jsonl" ]]; then
  workload="real Mixtral-8x7B tokens, HumanEval -> GSM8K (32 layers)"
  trace="$live/mixtral_humaneval_gsm8k.gtrace"
  experts=8 top_k=2 num_layers=32 slots=4 hidden=4096 expert_ffn=14336 horizon=3000
  byte_budget_mb=4096
  layer_ids="[$(seq -s ', ' 0 31)]"
  if [[ ! -s "$trace" ]]; then
    # Recorded as 2 steps per file; steps of 2 tokens make each phase last ~15 s at 10 steps/s.
    "$ctl" trace convert "$mixtral/humaneval_2_routing.jsonl" "$mixtral/gsm8k_2_routing.jsonl" \
      --tokens-per-step 2 -o "$trace.tmp" >/dev/null
    mv "$trace.tmp" "$trace"
  fi
elif [[ "$workload_kind" == olmoe && -f "$olmoe" ]]; then
  workload="real OLMoE-1B-7B routing, arxiv -> book -> c4 (layers 0, 7, 15)"
  trace="$live/olmoe_domains.gtrace"
  experts=64 top_k=8 layer_ids="[0, 7, 15]" num_layers=3 slots=20 expert_ffn=1024
  if [[ ! -s "$trace" ]]; then
    "$ctl" trace from-scenario --scenario config/demo/olmoe_domains_live.toml \
      --layers 0,7,15 --match-shares -o "$trace.tmp" >/dev/null
    mv "$trace.tmp" "$trace"
  fi
else
  workload="grace's synthetic drifting trace with co-activated clusters (no real $workload_kind traces at $traces)"
  trace="$live/synthetic_drift.gtrace"
  experts=32 top_k=4 layer_ids="[0, 1]" num_layers=2 slots=10
  if [[ ! -s "$trace" ]]; then
    "$ctl" trace synth --experts 32 --top-k 4 --layers 2 --steps 1800 --tokens-per-step 1024 \
      --phases 6 --clusters 8 --seed 11 -o "$trace" >/dev/null
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
# graced plans for the real model's GPU-sized experts; the CPU agents below run the same
# routing with a small hidden size so the demo fits a laptop.
[model]
num_experts = $experts
top_k = $top_k
layers = $layer_ids
hidden = $hidden
expert_ffn = $expert_ffn
[policy]
interval_s = 1
cooldown_s = $cooldown_s
horizon_intervals = $horizon
byte_budget_mb = $byte_budget_mb
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
