#include "daemon/starting_placement.h"

#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "policy/placement_policy.h"

namespace grace {
namespace {

Status MatchesModel(const DaemonConfig& config, const Placement& p, const std::string& where) {
  if (p.num_experts != config.model.num_experts || p.layer_ids != config.model.layer_ids) {
    return InvalidArgument(where + ": " + std::to_string(p.num_layers()) + " layers x " +
                           std::to_string(p.num_experts) +
                           " experts, not the configured model's layers and experts");
  }
  return p.Validate(config.topology).WithContext(where);
}

// [daemon].initial_placement: grace's placement JSON, checked against the configured model.
StatusOr<Placement> ReadInitialPlacement(const DaemonConfig& config) {
  const std::string& path = config.initial_placement;
  std::ifstream in(path);
  if (!in) return InvalidArgument("[daemon].initial_placement: cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  GRACE_ASSIGN_OR_RETURN(Placement p, PlacementFromJson(text.str(), path));
  GRACE_RETURN_IF_ERROR(MatchesModel(config, p, path));
  return p;
}

Status CheckRestored(const DaemonConfig& config, const PlacementRecord& r) {
  const Placement& p = r.placement;
  const Topology& t = config.topology;
  if (p.num_experts != config.model.num_experts || p.layer_ids != config.model.layer_ids ||
      r.topology.nodes != t.nodes || r.topology.gpus_per_node != t.gpus_per_node ||
      r.topology.slots_per_gpu != t.slots_per_gpu) {
    return FailedPrecondition(
        "the history's epoch " + std::to_string(r.epoch) + " (" + r.topology.ToString() + ", " +
        std::to_string(p.num_experts) + " experts, " + std::to_string(p.num_layers()) +
        " layers) does not match the configured model and topology (" + t.ToString() +
        "); use another --state-dir or restore the old config");
  }
  return p.Validate(t);
}

StatusOr<Placement> UniformEplbPacking(const DaemonConfig& config, const CostParams& params) {
  const int layers = static_cast<int>(config.model.layer_ids.size());
  std::vector<LayerStats> uniform(layers);
  for (int l = 0; l < layers; ++l) {
    uniform[l].layer_id = config.model.layer_ids[l];
    uniform[l].top_k = config.model.top_k;
    uniform[l].load.assign(config.model.num_experts, 1.0);
  }
  GRACE_ASSIGN_OR_RETURN(std::unique_ptr<PlacementPolicy> eplb, MakePlacementPolicy("eplb"));
  GRACE_ASSIGN_OR_RETURN(PlacementPlan plan,
                         PlanAllLayers(*eplb, uniform, config.topology, params));
  return plan.placement;
}

}  // namespace

StatusOr<StartingPlacementResult> StartingPlacement(const DaemonConfig& config,
                                                    const CostParams& params, HistoryStore& store,
                                                    int64_t now_ms) {
  StartingPlacementResult out;
  GRACE_ASSIGN_OR_RETURN(std::optional<PlacementRecord> current, store.CurrentPlacement());
  if (current.has_value()) {
    GRACE_RETURN_IF_ERROR(CheckRestored(config, *current));
    out.record = std::move(*current);
    out.source = "the history";
    return out;
  }
  if (!config.initial_placement.empty()) {
    GRACE_ASSIGN_OR_RETURN(out.record.placement, ReadInitialPlacement(config));
    out.source = config.initial_placement;
  } else {
    GRACE_ASSIGN_OR_RETURN(out.record.placement, UniformEplbPacking(config, params));
    out.source = "EPLB packing on uniform load";
  }
  out.record.epoch = 1;
  out.record.committed_at_ms = now_ms;
  out.record.topology = config.topology;
  GRACE_RETURN_IF_ERROR(store.CommitPlacement(out.record));
  return out;
}

StatusOr<Placement> CheckedPlacement(const DaemonConfig& config, const std::string& json,
                                     const std::string& where) {
  GRACE_ASSIGN_OR_RETURN(Placement p, PlacementFromJson(json, where));
  GRACE_RETURN_IF_ERROR(MatchesModel(config, p, where));
  return p;
}

}  // namespace grace
