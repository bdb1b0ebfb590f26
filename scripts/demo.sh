#!/usr/bin/env bash
# grace's main job on the embedded default, for a new user: set up, build, then
#  1. inspect a routing trace (the real Qwen1.5-MoE trace from ../shared/traces/real when present,
#     else a synthetic drifting trace generated here),
#  2. plan grace's placement and compare it with EPLB, contiguous and affinity placement,
#  3. simulate a drifting real workload online: static vs online grace vs periodic EPLB vs oracle,
#  4. run the live loop: graced and 2 grace-agents x 2 CPU ranks on loopback replaying a drifting
#     trace; graced's REST API and metrics are printed; Ctrl-C stops everything cleanly.
# GRACE_DEMO_LIVE_SECONDS (default 0: until Ctrl-C or the end of the replay) bounds step 4.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
ctl=build/tools/gracectl
out=${GRACE_DEMO_DIR:-build/demo}
mkdir -p "$out"
traces=${GRACE_TRACES_DIR:-../shared/traces/real}

if [[ -d "$traces/qwen1.5-moe-a2.7b-gsm8k" ]]; then
  echo "== real routing: Qwen1.5-MoE-A2.7B on GSM8K (vLLM trace, 3 MoE layers)"
  trace=("$traces"/qwen1.5-moe-a2.7b-gsm8k/moe_layer{0,8,12}.jsonl)
  scenario=config/scenarios/olmoe_domains_slow.toml
else
  echo "== no real traces at $traces: using grace's synthetic drifting workload"
  "$ctl" trace synth --experts 64 --top-k 8 --layers 4 --steps 64 --tokens-per-step 256 \
    --phases 4 --seed 7 -o "$out/synthetic.gtrace"
  trace=("$out/synthetic.gtrace")
  scenario=""
fi

echo; echo "== 1. trace info"
"$ctl" trace info "${trace[@]}"

echo; echo "== 2. plan on 2 nodes x 4 GPUs x 8 slots, grace against the baselines"
"$ctl" plan --trace "${trace[@]}" --nodes 2 --gpus-per-node 4 --slots-per-gpu 8 \
  --policy grace -o "$out/placement.json"
echo "placement written to $out/placement.json (SGLang reads its physical_to_logical_map)"
"$ctl" simulate --trace "${trace[@]}" --nodes 2 --gpus-per-node 4 --slots-per-gpu 8

if [[ -n "$scenario" ]]; then
  echo; echo "== 3. online re-placement on a drifting real workload ($scenario)"
  "$ctl" simulate --online --scenario "$scenario" || true  # exit 1 flags a missed target
fi

echo; echo "== 4. live: graced + 2 agents x 2 CPU ranks replaying a drifting trace"
# The real token-level traces do not drift within themselves, so the live replay uses grace's
# synthetic workload whose hot experts move every phase.
live="$out/live"
rm -rf "$live" && mkdir -p "$live/agent0" "$live/agent1"
"$ctl" trace synth --experts 32 --top-k 4 --layers 2 --steps 3000 --tokens-per-step 2048 \
  --phases 6 --seed 11 -o "$live/drift.gtrace" >/dev/null
export GRACE_CLUSTER_SECRET=${GRACE_CLUSTER_SECRET:-demo-secret}
export GRACE_API_TOKEN=${GRACE_API_TOKEN:-demo-token}
cat >"$live/graced.toml" <<TOML
[daemon]
http = "127.0.0.1:8750"
agents = "127.0.0.1:8751"
state_dir = "$live/state"
[agents]
heartbeat_ms = 200
report_ms = 1000
[topology]
nodes = 2
gpus_per_node = 2
slots_per_gpu = 10
# graced models the cluster it plans for (Qwen1.5-MoE-sized experts on GPUs); the CPU agents
# below run the same routing with a small hidden size so the demo fits a laptop.
[model]
num_experts = 32
top_k = 4
layers = [0, 1]
hidden = 2048
expert_ffn = 1408
[policy]
interval_s = 1
cooldown_s = 5
horizon_intervals = 30
TOML
for a in 0 1; do
  cat >"$live/agent$a.toml" <<TOML
[cluster]
nodes = 2
ranks_per_node = 2
slots_per_rank = 10
[agent]
first_rank = $((a * 2))
local_ranks = 2
[transport]
rendezvous = "127.0.0.1:29500"
[model]
experts = 32
top_k = 4
hidden = 64
ffn = 128
layers = 2
[replay]
trace = "$live/drift.gtrace"
steps_per_second = 10
[daemon]
address = "127.0.0.1:8751"
agent_id = "node$a"
[migration]
rendezvous = "127.0.0.1:29600"
[output]
dir = "$live/agent$a"
TOML
done
pids=()
stop() {
  echo; echo "demo: stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo: history kept in $live/state/grace.db"
}
trap stop EXIT
trap 'exit 0' INT TERM
build/daemon/graced --config "$live/graced.toml" >"$live/graced.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:8750/healthz >/dev/null 2>&1 && break; sleep 0.2; done
for a in 0 1; do
  build/agent/grace-agent --config "$live/agent$a.toml" >"$live/agent$a.log" 2>&1 &
  pids+=($!)
done
echo "graced:   http://127.0.0.1:8750/api/v1/status   (placement: /api/v1/placement,"
echo "          decisions: /api/v1/decisions, metrics: /metrics, API: /api/v1/openapi.json)"
echo "logs:     $live/*.log    Ctrl-C to stop"
deadline=$(( $(date +%s) + ${GRACE_DEMO_LIVE_SECONDS:-100000} ))
last=""
while (( $(date +%s) < deadline )); do
  sleep 2
  status=$(curl -sf http://127.0.0.1:8750/api/v1/status || true)
  [[ -z "$status" ]] && { echo "demo: graced stopped; see $live/graced.log"; break; }
  line=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print("epoch %d  agents up %d  migrations %d  decisions %d  imbalance %s" % (s["epoch"], s["agents_up"], s["migrations_total"], s["decisions_total"], " ".join("%.2f" % x for x in s["layer_imbalance"])))' "$status")
  [[ "$line" != "$last" ]] && echo "  $line" && last="$line"
  if ! kill -0 "${pids[1]}" 2>/dev/null && ! kill -0 "${pids[2]}" 2>/dev/null; then
    echo "demo: the agents finished the replay"; break
  fi
done
