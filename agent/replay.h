// The agent's replay driver: runs this process's ranks (one worker thread each) over a native
// trace, or over generated tokens through the gate, and writes per-step checksums.
//
// Per worker and step: read the routing-table pointer once, take the home tokens of this rank
// (the trace's home ranks, else BlockHomeRank on the token's index in the trace), generate their
// hidden states from (seed, token), run every MoE layer (MoeLayer), count loads, then append
// "step <s> tokens <n> checksum <sum of outputs>" to <output dir>/rank<r>.checksums and, when
// asked, the outputs to rank<r>.outputs (per token: i64 token index, hidden x f32), and at the end
// the phase times to rank<r>.summary.json.
#pragma once

#include <memory>
#include <vector>

#include "agent/agent_config.h"
#include "core/routing_table.h"
#include "kernels/expert_weights.h"

namespace grace {

// The layer ids and weights the config asks for (trace header, weights file or seed); errors
// name the key or tensor at fault.
struct AgentModel {
  std::vector<LayerId> layer_ids;
  ExpertWeights weights;
  std::shared_ptr<const RoutingTable> table;
};
StatusOr<AgentModel> LoadAgentModel(const AgentConfig& config);

// The default placement: experts contiguous over the ranks, spare slots holding replicas
// (slot s's spare holds expert (7 s) mod E), so replicas and weighted choice are exercised.
Placement DefaultPlacement(const Topology& topology, int num_experts,
                           const std::vector<LayerId>& layer_ids);

// Runs every local rank to the end of the replay; returns the first worker error.
Status RunAgent(const AgentConfig& config);

}  // namespace grace
