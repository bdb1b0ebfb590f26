// Topology: the shape of the cluster grace places experts on.
//
// nodes x gpus_per_node ranks, each with slots_per_gpu expert slots (spare slots included), and
// the two link classes of the cost model: intra-node (NVLink) and inter-node (the NIC of each
// node). Ranks are numbered node-major: rank r lives on node r / gpus_per_node. Physical slots
// are rank-major: slot p lives on rank p / slots_per_gpu.
//
// A plain value; parse it from TOML with ParseTopologyToml. Bandwidths are in gigabits per
// second, as network people quote them; the *_bytes_per_s accessors convert.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/ids.h"
#include "core/status.h"

namespace grace {

struct Topology {
  int nodes = 1;
  int gpus_per_node = 1;
  int slots_per_gpu = 1;
  // Defaults are DESIGN.md's reference settings: NVLink 150 GB/s, 25 Gb/s NIC per node.
  double intra_node_gbps = 1200.0;
  double inter_node_gbps = 25.0;
  double intra_node_latency_us = 3.0;
  double inter_node_latency_us = 10.0;

  int ranks() const { return nodes * gpus_per_node; }
  int total_slots() const { return ranks() * slots_per_gpu; }
  NodeId NodeOfRank(RankId rank) const { return rank / gpus_per_node; }
  RankId RankOfSlot(SlotId slot) const { return slot / slots_per_gpu; }
  NodeId NodeOfSlot(SlotId slot) const { return NodeOfRank(RankOfSlot(slot)); }
  double intra_node_bytes_per_s() const { return intra_node_gbps * 1e9 / 8.0; }
  double inter_node_bytes_per_s() const { return inter_node_gbps * 1e9 / 8.0; }

  // Checks every field is in range; the message names the field.
  Status Validate() const;
  std::string ToString() const;  // "2 nodes x 4 GPUs x 8 slots"
};

// Parses a [topology] table:
//   [topology]
//   nodes = 2
//   gpus_per_node = 4
//   slots_per_gpu = 8
//   intra_node_gbps = 1200      # optional
//   inter_node_gbps = 25        # optional
//   intra_node_latency_us = 3   # optional
//   inter_node_latency_us = 10  # optional
// `source_name` is used in error messages. Unknown keys are errors.
StatusOr<Topology> ParseTopologyToml(std::string_view toml_text, const std::string& source_name);

// Every field as a JSON object (the store's and the REST API's form).
nlohmann::json TopologyToJson(const Topology& t);
// The fields present in `j` over `base` (a non-object gives `base`); not validated.
Topology TopologyFromJson(const nlohmann::json& j, Topology base = {});

}  // namespace grace
