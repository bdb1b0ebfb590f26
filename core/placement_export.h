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

enum class ExportFormat { kSglang, kVllm, kVllmMapping, kTrtllm };

// "sglang", "vllm", "vllm-mapping" or "trtllm"; the error lists the names.
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

// vLLM's proposed initial-mapping record (pull request #41141, open, not in a release), one JSONL
// line: {"record_type": "eplb_initial_mapping", "version": 1, "num_redundant_experts": S - E,
// "num_slots": S, "initial_global_assignments": {"<moe layer>": [expert of each slot]}}, keyed
// like vLLM's EPLB by MoE layer index (0 = the first MoE layer, the placement's rows in order).
StatusOr<nlohmann::ordered_json> ToVllmInitialMapping(const Placement& placement);

// What the exports take besides the placement.
struct ExportOptions {
  // sglang: layers in the model, dense ones included (0: the last layer id + 1); trtllm: where
  // the MTP layers' ids start (0: the last layer id + 1).
  int num_model_layers = 0;
  // trtllm: extra MoE layer ids after the model's (multi-token prediction: TensorRT-LLM builds
  // one per MTP layer, 61 for DeepSeek-V3, and fails with a KeyError when the file lacks it).
  int mtp_layers = 0;
  // trtllm: the MTP rows copy this layer id's row; -1 gives them the balanced round-robin row
  // (slot p holds expert p % E), since no recorded load covers the MTP layer's own experts.
  int mtp_copy_layer = -1;
};

// TensorRT-LLM's MoE load balancer YAML (MoeLoadBalancerConfig in tensorrt_llm/llmapi/
// llm_args.py, formerly tensorrt_llm/_torch/model_config.py; the shape that
// examples/wide_ep/ep_load_balancer/generate_eplb_config.py writes):
//   num_slots: <slots per layer>
//   initial_global_assignments:
//     <model layer id>: [expert of slot 0, ..., expert of slot num_slots - 1]
//   layer_updates_per_iter: 0        (a static placement)
StatusOr<std::string> ToTrtllmLoadBalancerYaml(const Placement& placement,
                                               const ExportOptions& options = {});

// The file text of `format` (JSON formats pretty-printed, the mapping record on one line),
// ending with a newline.
StatusOr<std::string> ExportPlacement(const Placement& placement, ExportFormat format,
                                      const ExportOptions& options = {});

// The stack's launch flags that the exported file implies, one per line, for people: EP size
// (`ep_size`, 0 when unknown), redundant experts, slots, and the option that reads `file`.
std::string LaunchFlags(const Placement& placement, ExportFormat format, int ep_size,
                        const std::string& file);

}  // namespace grace
