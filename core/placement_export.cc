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
  if (name == "vllm-mapping") return ExportFormat::kVllmMapping;
  if (name == "trtllm") return ExportFormat::kTrtllm;
  return InvalidArgument("unknown export format \"" + name +
                         "\"; expected sglang, vllm, vllm-mapping or trtllm");
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

StatusOr<nlohmann::ordered_json> ToVllmInitialMapping(const Placement& placement) {
  GRACE_RETURN_IF_ERROR(CheckExportable(placement));
  // Ordered as the pull request writes it, record_type first; layers in MoE layer order.
  nlohmann::ordered_json assignments = nlohmann::ordered_json::object();
  for (int li = 0; li < placement.num_layers(); ++li) {
    assignments[std::to_string(li)] = placement.physical_to_logical[li];
  }
  nlohmann::ordered_json j;
  j["record_type"] = "eplb_initial_mapping";
  j["version"] = 1;
  j["num_redundant_experts"] = placement.num_slots() - placement.num_experts;
  j["num_slots"] = placement.num_slots();
  j["initial_global_assignments"] = std::move(assignments);
  return j;
}

StatusOr<std::string> ToTrtllmLoadBalancerYaml(const Placement& placement,
                                               const ExportOptions& options) {
  GRACE_RETURN_IF_ERROR(CheckExportable(placement));
  std::vector<LayerId> ids = placement.layer_ids;
  std::vector<std::vector<ExpertId>> rows = placement.physical_to_logical;
  if (options.mtp_layers < 0 || options.mtp_layers > 16) {
    return InvalidArgument("trtllm export: MTP layers must be 0..16, got " +
                           std::to_string(options.mtp_layers));
  }
  if (options.mtp_layers > 0) {
    const int first = std::max(options.num_model_layers, ids.back() + 1);
    std::vector<ExpertId> row(placement.num_slots());
    if (options.mtp_copy_layer >= 0) {
      auto it = std::find(ids.begin(), ids.end(), options.mtp_copy_layer);
      if (it == ids.end()) {
        return InvalidArgument("trtllm export: MTP layers copy layer " +
                               std::to_string(options.mtp_copy_layer) +
                               ", which the placement does not have");
      }
      row = rows[it - ids.begin()];
    } else {
      for (SlotId s = 0; s < placement.num_slots(); ++s) row[s] = s % placement.num_experts;
    }
    for (int m = 0; m < options.mtp_layers; ++m) {
      ids.push_back(first + m);
      rows.push_back(row);
    }
  }
  std::string out = "num_slots: " + std::to_string(placement.num_slots()) + "\n";
  out += "initial_global_assignments:\n";
  for (size_t li = 0; li < rows.size(); ++li) {
    out += "  " + std::to_string(ids[li]) + ": [";
    for (size_t s = 0; s < rows[li].size(); ++s) {
      if (s > 0) out += ", ";
      out += std::to_string(rows[li][s]);
    }
    out += "]\n";
  }
  out += "layer_updates_per_iter: 0\n";
  return out;
}

StatusOr<std::string> ExportPlacement(const Placement& placement, ExportFormat format,
                                      const ExportOptions& options) {
  if (format == ExportFormat::kTrtllm) return ToTrtllmLoadBalancerYaml(placement, options);
  if (format == ExportFormat::kVllmMapping) {
    StatusOr<nlohmann::ordered_json> j = ToVllmInitialMapping(placement);
    if (!j.ok()) return j.status();
    return j->dump() + "\n";
  }
  StatusOr<nlohmann::json> j = format == ExportFormat::kSglang
                                   ? ToSglangExpertLocation(placement, options.num_model_layers)
                                   : ToVllmEplbState(placement);
  if (!j.ok()) return j.status();
  std::string out;
  WriteJson(*j, 0, &out);
  out += "\n";
  return out;
}

std::string LaunchFlags(const Placement& placement, ExportFormat format, int ep_size,
                        const std::string& file) {
  const int slots = placement.num_slots();
  const int redundant = slots - placement.num_experts;
  const std::string ep = ep_size > 0 ? std::to_string(ep_size) : "<EP size>";
  std::string out;
  auto line = [&](const std::string& s) { out += s + "\n"; };
  line(std::to_string(slots) + " slots per layer = " + std::to_string(placement.num_experts) +
       " experts + " + std::to_string(redundant) + " redundant" +
       (ep_size > 0 ? ", EP size " + ep + " (" + std::to_string(slots / ep_size) + " per GPU)"
                    : ", EP size unknown (no topology in the placement; give --ep-size)"));
  if (ep_size > 0 && slots % ep_size != 0) {
    line("warning: " + std::to_string(slots) + " slots do not divide by EP size " + ep);
  }
  const std::string redundancy =
      "--eplb-config '{\"num_redundant_experts\": " + std::to_string(redundant) + "}'";
  switch (format) {
    case ExportFormat::kSglang:
      line("SGLang: --tp-size " + ep + " --ep-size " + ep + " --ep-num-redundant-experts " +
           std::to_string(redundant) + " --init-expert-location " + file);
      line("SGLang: leave --enable-eplb off to serve this placement as planned");
      break;
    case ExportFormat::kVllm:
      line("vLLM: --enable-expert-parallel (EP size = TP x DP = " + ep + ") --enable-eplb " +
           redundancy);
      line("vLLM: no upstream option reads the EPLB state file; load it with your own hook");
      break;
    case ExportFormat::kVllmMapping:
      line("vLLM: --enable-expert-parallel (EP size = TP x DP = " + ep + ") --enable-eplb " +
           redundancy);
      line(
          "vLLM: the eplb_initial_mapping record is read only by vLLM with pull request #41141 "
          "(open, not in a release), through the --eplb-config key that pull request adds");
      break;
    case ExportFormat::kTrtllm:
      line("TensorRT-LLM: trtllm-serve --tp_size " + ep + " --ep_size " + ep +
           " --extra_llm_api_options with moe_config: {load_balancer: " + file + "}");
      line("TensorRT-LLM: num_slots " + std::to_string(slots) +
           " (in the file); with MTP, export with --mtp-layers N");
      break;
  }
  return out;
}

}  // namespace grace
