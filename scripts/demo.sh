#!/usr/bin/env bash
# grace's main job on the embedded default, for a new user: set up, build, then
#  1. inspect a routing trace (the real Qwen1.5-MoE trace from ../shared/traces/real when present,
#     else a synthetic drifting trace generated here),
#  2. plan grace's placement and compare it with EPLB, contiguous and affinity placement,
#  3. simulate a drifting real workload online: static vs online grace vs periodic EPLB vs oracle,
#  4. run grace live (scripts/live.sh): graced and 2 grace-agents x 2 CPU ranks on loopback
#     replaying real Qwen1.5-MoE tokens when the traces are there (else a synthetic drifting
#     workload), graced grouping by the agents' co-activation, with the web
#     UI at http://127.0.0.1:8750/; a line per change of epoch; Ctrl-C stops everything cleanly.
# GRACE_DEMO_LIVE_SECONDS (default: until Ctrl-C) bounds step 4.
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
echo "placement written to $out/placement.json"
"$ctl" export --placement "$out/placement.json" --format sglang -o "$out/expert_location.json"
echo "SGLang's --init-expert-location file: $out/expert_location.json"
"$ctl" simulate --trace "${trace[@]}" --nodes 2 --gpus-per-node 4 --slots-per-gpu 8

if [[ -n "$scenario" ]]; then
  echo; echo "== 3. online re-placement on a drifting real workload ($scenario)"
  "$ctl" simulate --online --scenario "$scenario" || true  # exit 1 flags a missed target
fi

echo; echo "== 4. live: graced + 2 agents x 2 CPU ranks replaying real tokens (scripts/live.sh)"
live=${GRACE_LIVE_DIR:-$out/live}
export GRACE_LIVE_DIR=$live GRACE_API_TOKEN=${GRACE_API_TOKEN:-demo-token}
http_port=${GRACE_HTTP_PORT:-8750}
scripts/live.sh &
live_pid=$!
stop() {
  trap - EXIT INT TERM
  echo; echo "demo: stopping"
  kill -TERM "$live_pid" 2>/dev/null || true
  wait "$live_pid" 2>/dev/null || true
  echo "demo: history kept in $live/state/grace.db (gracectl export --state-dir $live/state ...)"
}
trap stop EXIT
trap 'exit 0' INT TERM
echo "demo: open http://127.0.0.1:$http_port/ (API token for changes: $GRACE_API_TOKEN); Ctrl-C stops"
deadline=$(( $(date +%s) + ${GRACE_DEMO_LIVE_SECONDS:-100000000} ))
# A line when the epoch, the agents or the migrations change, else every 10 s.
last_key="" last_time=0
while (( $(date +%s) < deadline )); do
  sleep 2
  kill -0 "$live_pid" 2>/dev/null || { echo "demo: the live run stopped; see $live/*.log"; exit 1; }
  status=$(curl -sf "http://127.0.0.1:$http_port/api/v1/status" || true)
  [[ -z "$status" ]] && continue
  read -r key line < <(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print("%d/%d/%d" % (s["epoch"], s["agents_up"], s["migrations_total"]), "epoch %d  agents up %d  migrations %d  decisions %d  imbalance per layer %s" % (s["epoch"], s["agents_up"], s["migrations_total"], s["decisions_total"], " ".join("%.2f" % x for x in s["layer_imbalance"])))' "$status")
  if [[ "$key" != "$last_key" ]] || (( $(date +%s) - last_time >= 10 )); then
    echo "  $(date +%T)  $line"
    last_key=$key last_time=$(date +%s)
  fi
done
