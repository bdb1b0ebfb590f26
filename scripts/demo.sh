#!/usr/bin/env bash
# grace's main job on the embedded default, for a new user: set up, build, then
#  1. inspect a routing trace (the real Qwen1.5-MoE trace from ../shared/traces/real when present,
#     else a synthetic drifting trace generated here),
#  2. plan grace's placement and compare it with EPLB, contiguous and affinity placement,
#  3. replay a drifting scenario online: static vs online grace vs periodic EPLB vs oracle.
# When graced and grace-agent can run the live loop, this script starts them instead (see README).
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
