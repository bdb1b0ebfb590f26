// Placement: which logical expert each physical slot holds, per MoE layer.
//
// Slots are rank-major (slot p lives on rank p / slots_per_gpu), the convention of DeepSeek
// EPLB, vLLM, SGLang and TensorRT-LLM; `gracectl export` (core/placement_export.h) writes the
// files those stacks read. An empty (spare) slot holds kEmptySlot (-1).
//
// A plain value. Build one, then Validate() it against the topology before use.
#pragma once

#include <string>
#include <vector>

#include "core/ids.h"
#include "core/status.h"
#include "core/topology.h"

namespace grace {

struct Placement {
  int num_experts = 0;
  std::vector<LayerId> layer_ids;                          // model layer number of each row
  std::vector<std::vector<ExpertId>> physical_to_logical;  // [layer index][slot]

  // An all-empty placement of the right shape.
  static Placement Empty(int num_experts, std::vector<LayerId> layer_ids, int num_slots);

  int num_layers() const { return static_cast<int>(physical_to_logical.size()); }
  int num_slots() const {
    return physical_to_logical.empty() ? 0 : static_cast<int>(physical_to_logical[0].size());
  }
  // Replica count of each expert in one layer.
  std::vector<int> ReplicaCounts(int layer_index) const;
  // Slots holding `expert` in one layer, ascending.
  std::vector<SlotId> SlotsOf(int layer_index, ExpertId expert) const;

  // Checks the shape against `topology` and that every expert of every layer has at least one
  // replica; the message names the layer, slot or expert at fault.
  Status Validate(const Topology& topology) const;

  bool operator==(const Placement&) const = default;
};

// grace's placement JSON: {"num_experts": E, "layers": [...], "physical_to_logical_map":
// [[...], ...], "topology": {...}}. Not what SGLang reads: `gracectl export --format sglang`.
std::string PlacementToJson(const Placement& placement, const Topology& topology);
// Parses that JSON (topology is optional in the input; when present it is returned too).
StatusOr<Placement> PlacementFromJson(const std::string& json_text, const std::string& source_name,
                                      Topology* topology_out = nullptr);

}  // namespace grace
