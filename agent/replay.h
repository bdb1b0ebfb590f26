// The agent's replay driver: runs this process's ranks (one worker thread each) over a native
// trace, or over generated tokens through the gate, and writes per-step checksums.
//
// Per worker and step: read the serving view (agent/serving_state.h) once, which gives the
// routing table of this step (and, at a committed switch step, the staged weights to load
// first), take the home tokens of this rank (the trace's home ranks, else BlockHomeRank on the
// token's index in the trace), generate their hidden states from (seed, token), run every MoE
// layer (MoeLayer), count loads, then append "step <s> tokens <n> checksum <sum of outputs>" to
// <output dir>/rank<r>.checksums, "step <s> epoch <e> us <compute time>" to rank<r>.steps and,
// when asked, the outputs to rank<r>.outputs (per token: i64 token index, hidden x f32), and at
// the end the phase times to rank<r>.summary.json.
//
// With [daemon].address the agent first takes its epoch and placement from the daemon's
// Welcome, then serves the protocol on the calling thread (agent/daemon_client.h) while the
// workers run. It is then also fault tolerant: when a peer's process dies, the workers re-form
// the data-path mesh (waiting up to connect_timeout_ms for the restarted peer), the ranks agree
// on the first step one of them has not written, and the replay resumes there; output files
// are appended, so every step is written once.
#pragma once

#include <atomic>
#include <functional>
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

// Runs every local rank to the end of the replay; returns the first worker error. `on_ready`,
// when set, is called once, on a worker thread, when every local rank has joined the data-path
// mesh (with a daemon, after its Welcome): grace-agent tells systemd it is ready there. Once
// `*stop` is set (SIGTERM) every local rank finishes its step and stops at the same step;
// with a daemon the last report and a Goodbye go out first.
Status RunAgent(const AgentConfig& config, const std::function<void()>& on_ready = {},
                const std::atomic<bool>* stop = nullptr);

}  // namespace grace
