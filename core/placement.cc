#include "core/placement.h"

#include <nlohmann/json.hpp>

namespace grace {

Placement Placement::Empty(int num_experts, std::vector<LayerId> layer_ids, int num_slots) {
  Placement p;
  p.num_experts = num_experts;
  p.physical_to_logical.assign(layer_ids.size(), std::vector<ExpertId>(num_slots, kEmptySlot));
  p.layer_ids = std::move(layer_ids);
  return p;
}

std::vector<int> Placement::ReplicaCounts(int layer_index) const {
  std::vector<int> counts(num_experts, 0);
  for (ExpertId e : physical_to_logical[layer_index]) {
    if (e >= 0 && e < num_experts) ++counts[e];
  }
  return counts;
}

std::vector<SlotId> Placement::SlotsOf(int layer_index, ExpertId expert) const {
  std::vector<SlotId> slots;
  const auto& row = physical_to_logical[layer_index];
  for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
    if (row[s] == expert) slots.push_back(s);
  }
  return slots;
}

Status Placement::Validate(const Topology& topology) const {
  GRACE_RETURN_IF_ERROR(topology.Validate());
  if (num_experts < 1) return InvalidArgument("placement: num_experts must be at least 1");
  if (layer_ids.size() != physical_to_logical.size()) {
    return InvalidArgument("placement: " + std::to_string(layer_ids.size()) + " layer ids for " +
                           std::to_string(physical_to_logical.size()) + " layer rows");
  }
  for (int li = 0; li < num_layers(); ++li) {
    const auto& row = physical_to_logical[li];
    const std::string where = "placement layer " + std::to_string(layer_ids[li]);
    if (row.size() % topology.ranks() != 0) {
      return InvalidArgument(where + ": " + std::to_string(row.size()) +
                             " slots do not divide by " + std::to_string(topology.ranks()) +
                             " ranks");
    }
    if (static_cast<int>(row.size()) != topology.total_slots()) {
      return InvalidArgument(where + ": " + std::to_string(row.size()) +
                             " slots, but the topology (" + topology.ToString() + ") has " +
                             std::to_string(topology.total_slots()));
    }
    for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
      if (row[s] != kEmptySlot && (row[s] < 0 || row[s] >= num_experts)) {
        return InvalidArgument(where + ", slot " + std::to_string(s) + ": expert " +
                               std::to_string(row[s]) + " is not in [0, " +
                               std::to_string(num_experts) + ") and not -1 (empty)");
      }
    }
    std::vector<int> counts = ReplicaCounts(li);
    for (ExpertId e = 0; e < num_experts; ++e) {
      if (counts[e] == 0) {
        return InvalidArgument(where + ": expert " + std::to_string(e) + " has no replica");
      }
    }
  }
  return Status::Ok();
}

std::string PlacementToJson(const Placement& placement, const Topology& topology) {
  nlohmann::json j;
  j["num_experts"] = placement.num_experts;
  j["layers"] = placement.layer_ids;
  j["physical_to_logical_map"] = placement.physical_to_logical;
  j["topology"] = {{"nodes", topology.nodes},
                   {"gpus_per_node", topology.gpus_per_node},
                   {"slots_per_gpu", topology.slots_per_gpu}};
  return j.dump();
}

StatusOr<Placement> PlacementFromJson(const std::string& json_text, const std::string& source_name,
                                      Topology* topology_out) {
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument(source_name + ": not valid JSON");
  if (!j.is_object() || !j.contains("physical_to_logical_map") ||
      !j["physical_to_logical_map"].is_array()) {
    return InvalidArgument(source_name + ": missing array \"physical_to_logical_map\"");
  }
  Placement p;
  int max_expert = -1;
  size_t width = 0;
  for (const auto& row : j["physical_to_logical_map"]) {
    if (!row.is_array())
      return InvalidArgument(source_name + ": physical_to_logical_map rows must be arrays");
    std::vector<ExpertId> r;
    for (const auto& v : row) {
      if (!v.is_number_integer()) {
        return InvalidArgument(source_name + ": physical_to_logical_map row " +
                               std::to_string(p.physical_to_logical.size()) +
                               " holds a non-integer");
      }
      r.push_back(v.get<ExpertId>());
      max_expert = std::max(max_expert, r.back());
    }
    if (!p.physical_to_logical.empty() && r.size() != width) {
      return InvalidArgument(source_name + ": physical_to_logical_map row " +
                             std::to_string(p.physical_to_logical.size()) + " has " +
                             std::to_string(r.size()) + " slots, row 0 has " +
                             std::to_string(width));
    }
    width = r.size();
    p.physical_to_logical.push_back(std::move(r));
  }
  if (j.contains("layers") && j["layers"].is_array()) {
    for (const auto& v : j["layers"]) p.layer_ids.push_back(v.get<LayerId>());
  } else {
    for (int i = 0; i < p.num_layers(); ++i) p.layer_ids.push_back(i);
  }
  if (p.layer_ids.size() != p.physical_to_logical.size()) {
    return InvalidArgument(source_name + ": \"layers\" has " + std::to_string(p.layer_ids.size()) +
                           " entries for " + std::to_string(p.num_layers()) + " rows");
  }
  p.num_experts = j.contains("num_experts") ? j["num_experts"].get<int>() : max_expert + 1;
  if (topology_out != nullptr && j.contains("topology")) {
    *topology_out = TopologyFromJson(j["topology"], *topology_out);
  }
  return p;
}

}  // namespace grace
