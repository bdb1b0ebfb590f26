#include "core/topology.h"

#include <sstream>

#include "core/toml_fields.h"

namespace grace {

nlohmann::json TopologyToJson(const Topology& t) {
  return {{"nodes", t.nodes},
          {"gpus_per_node", t.gpus_per_node},
          {"slots_per_gpu", t.slots_per_gpu},
          {"intra_node_gbps", t.intra_node_gbps},
          {"inter_node_gbps", t.inter_node_gbps},
          {"intra_node_latency_us", t.intra_node_latency_us},
          {"inter_node_latency_us", t.inter_node_latency_us}};
}

Topology TopologyFromJson(const nlohmann::json& j, Topology base) {
  if (!j.is_object()) return base;
  Topology t = base;
  t.nodes = j.value("nodes", t.nodes);
  t.gpus_per_node = j.value("gpus_per_node", t.gpus_per_node);
  t.slots_per_gpu = j.value("slots_per_gpu", t.slots_per_gpu);
  t.intra_node_gbps = j.value("intra_node_gbps", t.intra_node_gbps);
  t.inter_node_gbps = j.value("inter_node_gbps", t.inter_node_gbps);
  t.intra_node_latency_us = j.value("intra_node_latency_us", t.intra_node_latency_us);
  t.inter_node_latency_us = j.value("inter_node_latency_us", t.inter_node_latency_us);
  return t;
}

Status Topology::Validate() const {
  if (nodes < 1)
    return InvalidArgument("topology.nodes must be at least 1, got " + std::to_string(nodes));
  if (gpus_per_node < 1) {
    return InvalidArgument("topology.gpus_per_node must be at least 1, got " +
                           std::to_string(gpus_per_node));
  }
  if (slots_per_gpu < 1) {
    return InvalidArgument("topology.slots_per_gpu must be at least 1, got " +
                           std::to_string(slots_per_gpu));
  }
  if (!(intra_node_gbps > 0) || !(inter_node_gbps > 0)) {
    return InvalidArgument("topology bandwidths must be positive");
  }
  if (intra_node_latency_us < 0 || inter_node_latency_us < 0) {
    return InvalidArgument("topology latencies must not be negative");
  }
  // Per-slot tables are sized from this product: bound it before anything is allocated.
  constexpr int64_t kMaxSlots = int64_t{1} << 20;
  const int64_t slots = int64_t{nodes} * gpus_per_node * slots_per_gpu;
  if (slots > kMaxSlots) {
    return InvalidArgument("topology of " + std::to_string(nodes) + " nodes x " +
                           std::to_string(gpus_per_node) + " GPUs x " +
                           std::to_string(slots_per_gpu) + " slots = " + std::to_string(slots) +
                           " slots, over the " + std::to_string(kMaxSlots) + " grace plans");
  }
  return Status::Ok();
}

std::string Topology::ToString() const {
  std::ostringstream s;
  s << nodes << " nodes x " << gpus_per_node << " GPUs x " << slots_per_gpu << " slots";
  return s.str();
}

StatusOr<Topology> ParseTopologyToml(std::string_view toml_text, const std::string& source_name) {
  GRACE_ASSIGN_OR_RETURN(toml::table root, ParseTomlText(toml_text, source_name));
  const toml::table* tbl = root["topology"].as_table();
  if (tbl == nullptr) return InvalidArgument(source_name + ": missing [topology] table");
  TomlFields f(*tbl, source_name, "topology");
  GRACE_RETURN_IF_ERROR(
      f.RejectUnknown({"nodes", "gpus_per_node", "slots_per_gpu", "intra_node_gbps",
                       "inter_node_gbps", "intra_node_latency_us", "inter_node_latency_us"}));
  Topology t;
  GRACE_RETURN_IF_ERROR(f.Int("nodes", 1, 1, 4096, &t.nodes, /*required=*/true));
  GRACE_RETURN_IF_ERROR(f.Int("gpus_per_node", 1, 1, 64, &t.gpus_per_node, true));
  GRACE_RETURN_IF_ERROR(f.Int("slots_per_gpu", 1, 1, 4096, &t.slots_per_gpu, true));
  GRACE_RETURN_IF_ERROR(
      f.Double("intra_node_gbps", t.intra_node_gbps, 1e-3, 1e6, &t.intra_node_gbps));
  GRACE_RETURN_IF_ERROR(
      f.Double("inter_node_gbps", t.inter_node_gbps, 1e-3, 1e6, &t.inter_node_gbps));
  GRACE_RETURN_IF_ERROR(
      f.Double("intra_node_latency_us", t.intra_node_latency_us, 0, 1e6, &t.intra_node_latency_us));
  GRACE_RETURN_IF_ERROR(
      f.Double("inter_node_latency_us", t.inter_node_latency_us, 0, 1e6, &t.inter_node_latency_us));
  return t;
}

}  // namespace grace
