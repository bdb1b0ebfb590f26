// Placement export: a Placement in the formats that serving stacks read at startup, so a
// placement planned by `gracectl plan` or committed by graced can seed SGLang, vLLM or
// TensorRT-LLM. Slots are rank-major in all three, as in grace (slot p on rank p / slots_per_rank).
//
//   Placement p = ...;
//   const int filled = FillEmptySlots(&p);  // the stacks have no empty slots
//   StatusOr<std::string> text = ExportPlacement(p, ExportFormat::kTrtllm);
//
// Layer numbering. A Placement row carries the model's own layer id (layer_ids, e.g. 3..60 for
// DeepSeek-V3's MoE layers). SGLang indexes rows by model layer (dense ones included), so its
// export has one row per model layer; TensorRT-LLM keys assignments by model layer id; vLLM
// indexes by MoE layer (0 = the model's first MoE layer), so its rows are the placement's rows in
// order and the placement must cover exactly the model's MoE layers.
//
// Pure functions, no I/O; safe from any thread.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/placement.h"
#include "core/status.h"

namespace grace {

enum class ExportFormat { kSglang, kVllm, kTrtllm };

// "sglang", "vllm" or "trtllm"; the error lists the names.
StatusOr<ExportFormat> ParseExportFormat(const std::string& name);

// Puts an expert in every empty (-1) slot, since none of the stacks has empty slots: each empty
// slot, in slot order, gets another replica of the expert with the fewest replicas in its layer
// (the lowest id on ties), the way SGLang and vLLM spread their default redundant slots. Returns
// how many slots it filled.
int FillEmptySlots(Placement* placement);

// SGLang's `--init-expert-location FILE.json`: {"physical_to_logical_map": [layer][slot]},
// read by ExpertLocationMetadata.init_by_mapping (python/sglang/srt/eplb/expert_location.py),
// which takes every key of the file as an argument, so this is the only key. One row per model
// layer, 0 .. num_model_layers - 1 (0: the last layer id + 1); layers without a placement row
// (dense layers) get SGLang's trivial row (slot p holds expert p % num_experts), which SGLang
// never routes through.
StatusOr<nlohmann::json> ToSglangExpertLocation(const Placement& placement,
                                                int num_model_layers = 0);

// vLLM's EPLB state (EplbState in vllm/distributed/eplb/eplb_state.py), one row per MoE layer:
//   physical_to_logical_map  [layers][num_slots]
//   logical_to_physical_map  [layers][num_experts][num_slots - num_experts + 1]: each expert's
//                            slots in increasing slot order (as EplbState.build lists them),
//                            padded with -1 to vLLM's width num_redundant_experts + 1
//   logical_replica_count    [layers][num_experts]
// plus "layers": the model layer id of each row.
StatusOr<nlohmann::json> ToVllmEplbState(const Placement& placement);

// TensorRT-LLM's MoE load balancer YAML (MoeLoadBalancerConfig in tensorrt_llm/llmapi/
// llm_args.py, formerly tensorrt_llm/_torch/model_config.py; the shape that
// examples/wide_ep/ep_load_balancer/generate_eplb_config.py writes):
//   num_slots: <slots per layer>
//   initial_global_assignments:
//     <model layer id>: [expert of slot 0, ..., expert of slot num_slots - 1]
//   layer_updates_per_iter: 0        (a static placement)
StatusOr<std::string> ToTrtllmLoadBalancerYaml(const Placement& placement);

// The file text of `format` (JSON formats pretty-printed), ending with a newline.
StatusOr<std::string> ExportPlacement(const Placement& placement, ExportFormat format,
                                      int num_model_layers = 0);

}  // namespace grace
