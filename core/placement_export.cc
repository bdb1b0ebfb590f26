#include "core/placement_export.h"

#include <algorithm>

namespace grace {
namespace {

// What every format needs: one row per layer id, ids increasing (rows are indexed or keyed by
// them), equal widths, and every slot holding an expert that exists, each expert at least once.
Status CheckExportable(const Placement& p) {
  if (p.num_experts < 1) return InvalidArgument("placement: num_experts must be at least 1");
  if (p.num_layers() == 0) return InvalidArgument("placement: no layers");
  if (p.layer_ids.size() != p.physical_to_logical.size()) {
    return InvalidArgument("placement: " + std::to_string(p.layer_ids.size()) + " layer ids for " +
                           std::to_string(p.num_layers()) + " layer rows");
  }
  for (int li = 0; li < p.num_layers(); ++li) {
    const std::string where = "placement layer " + std::to_string(p.layer_ids[li]);
    if (p.layer_ids[li] < 0 || (li > 0 && p.layer_ids[li] <= p.layer_ids[li - 1])) {
      return InvalidArgument(where + " (row " + std::to_string(li) +
                             "): layer ids must be non-negative and increasing");
    }
    const auto& row = p.physical_to_logical[li];
    if (static_cast<int>(row.size()) != p.num_slots()) {
      return InvalidArgument(where + ": " + std::to_string(row.size()) + " slots, row 0 has " +
                             std::to_string(p.num_slots()));
    }
    for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
      if (row[s] == kEmptySlot) {
        return InvalidArgument(where + ", slot " + std::to_string(s) +
                               ": empty, and serving stacks need an expert in every slot "
                               "(fill empty slots first)");
      }
      if (row[s] < 0 || row[s] >= p.num_experts) {
        return InvalidArgument(where + ", slot " + std::to_string(s) + ": expert " +
                               std::to_string(row[s]) + " is not in [0, " +
                               std::to_string(p.num_experts) + ")");
      }
    }
    const std::vector<int> counts = p.ReplicaCounts(li);
    for (ExpertId e = 0; e < p.num_experts; ++e) {
      if (counts[e] == 0) {
        return InvalidArgument(where + ": expert " + std::to_string(e) + " has no replica");
      }
    }
  }
  return Status::Ok();
}

// Indented JSON with every array of scalars on one line, so a [layer][slot] map reads (and
// diffs) as one line per layer instead of one line per number.
void WriteJson(const nlohmann::json& j, int indent, std::string* out) {
  const bool flat = !j.is_structured() || std::none_of(j.begin(), j.end(), [](const auto& v) {
    return v.is_structured();
  });
  if (flat) {
    *out += j.dump();
    return;
  }
  const bool object = j.is_object();
  *out += object ? "{\n" : "[\n";
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it != j.begin()) *out += ",\n";
    out->append(indent + 2, ' ');
    if (object) *out += nlohmann::json(it.key()).dump() + ": ";
    WriteJson(*it, indent + 2, out);
  }
  *out += "\n";
  out->append(indent, ' ');
  *out += object ? "}" : "]";
}

}  // namespace

StatusOr<ExportFormat> ParseExportFormat(const std::string& name) {
  if (name == "sglang") return ExportFormat::kSglang;
  if (name == "vllm") return ExportFormat::kVllm;
  if (name == "trtllm") return ExportFormat::kTrtllm;
  return InvalidArgument("unknown export format \"" + name + "\"; expected sglang, vllm or trtllm");
}

int FillEmptySlots(Placement* placement) {
  int filled = 0;
  for (int li = 0; li < placement->num_layers(); ++li) {
    std::vector<int> counts = placement->ReplicaCounts(li);
    for (ExpertId& e : placement->physical_to_logical[li]) {
      if (e != kEmptySlot || counts.empty()) continue;
      e = static_cast<ExpertId>(std::min_element(counts.begin(), counts.end()) - counts.begin());
      ++counts[e];
      ++filled;
    }
  }
  return filled;
}

StatusOr<nlohmann::json> ToSglangExpertLocation(const Placement& placement, int num_model_layers) {
  GRACE_RETURN_IF_ERROR(CheckExportable(placement));
  const int needed = placement.layer_ids.back() + 1;
  if (num_model_layers == 0) num_model_layers = needed;
  if (num_model_layers < needed) {
    return InvalidArgument("sglang export: the model has " + std::to_string(num_model_layers) +
                           " layers, but the placement has layer " +
                           std::to_string(placement.layer_ids.back()));
  }
  std::vector<ExpertId> trivial(placement.num_slots());
  for (SlotId s = 0; s < placement.num_slots(); ++s) trivial[s] = s % placement.num_experts;
  std::vector<std::vector<ExpertId>> rows(num_model_layers, trivial);
  for (int li = 0; li < placement.num_layers(); ++li) {
    rows[placement.layer_ids[li]] = placement.physical_to_logical[li];
  }
  return nlohmann::json{{"physical_to_logical_map", rows}};
}

StatusOr<nlohmann::json> ToVllmEplbState(const Placement& placement) {
  GRACE_RETURN_IF_ERROR(CheckExportable(placement));
  const int width = placement.num_slots() - placement.num_experts + 1;
  nlohmann::json logical_to_physical = nlohmann::json::array();
  nlohmann::json replica_count = nlohmann::json::array();
  for (int li = 0; li < placement.num_layers(); ++li) {
    nlohmann::json layer = nlohmann::json::array();
    for (ExpertId e = 0; e < placement.num_experts; ++e) {
      std::vector<SlotId> slots = placement.SlotsOf(li, e);  // ascending
      slots.resize(width, -1);
      layer.push_back(slots);
    }
    logical_to_physical.push_back(std::move(layer));
    replica_count.push_back(placement.ReplicaCounts(li));
  }
  return nlohmann::json{{"physical_to_logical_map", placement.physical_to_logical},
                        {"logical_to_physical_map", std::move(logical_to_physical)},
                        {"logical_replica_count", std::move(replica_count)},
                        {"layers", placement.layer_ids}};
}

StatusOr<std::string> ToTrtllmLoadBalancerYaml(const Placement& placement) {
  GRACE_RETURN_IF_ERROR(CheckExportable(placement));
  std::string out = "num_slots: " + std::to_string(placement.num_slots()) + "\n";
  out += "initial_global_assignments:\n";
  for (int li = 0; li < placement.num_layers(); ++li) {
    out += "  " + std::to_string(placement.layer_ids[li]) + ": [";
    const auto& row = placement.physical_to_logical[li];
    for (size_t s = 0; s < row.size(); ++s) {
      if (s > 0) out += ", ";
      out += std::to_string(row[s]);
    }
    out += "]\n";
  }
  out += "layer_updates_per_iter: 0\n";
  return out;
}

StatusOr<std::string> ExportPlacement(const Placement& placement, ExportFormat format,
                                      int num_model_layers) {
  if (format == ExportFormat::kTrtllm) return ToTrtllmLoadBalancerYaml(placement);
  StatusOr<nlohmann::json> j = format == ExportFormat::kSglang
                                   ? ToSglangExpertLocation(placement, num_model_layers)
                                   : ToVllmEplbState(placement);
  if (!j.ok()) return j.status();
  std::string out;
  WriteJson(*j, 0, &out);
  out += "\n";
  return out;
}

}  // namespace grace
