// WorkloadStream: the step-by-step load an online simulation serves, built from a sequence of
// phases, each an imported trace replayed or sampled for a number of steps.
//
// A count-only phase (per-expert frequencies) yields, each step, a multinomial batch of
// tokens_per_step * top_k assignments per layer (seeded, optionally jittered: see
// policy/load_sampling.h). A token-level phase replays its tokens in order, tokens_per_step per
// step, from first_token on, wrapping around within [first_token, last_token); each step then
// carries the tokens themselves, so the cost model is exact on them.
//
//   GRACE_ASSIGN_OR_RETURN(WorkloadStream stream, WorkloadStream::Create(std::move(phases)));
//   std::vector<LayerStats> step;
//   while (stream.Next(&step)) { ... }
//
// Thread contract: not thread-safe; one simulation thread. Pure computation.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/trace.h"
#include "policy/layer_stats.h"

namespace grace {

struct WorkloadPhase {
  std::string name;  // for messages and reports (the source as the scenario names it)
  Trace trace;
  int steps = 0;
  int tokens_per_step = 0;
  int top_k = 0;  // overrides the trace's (count-only sources often do not record it)
  double noise = 0;
  uint64_t seed = 1;
  int64_t first_token = 0;  // token-level sources: the replayed window [first_token,
  int64_t last_token = 0;   // last_token), 0: to the end of the trace; the replay wraps in it
};

class WorkloadStream {
 public:
  // Checks that every phase has the same experts and layer count, a known top-k, steps and
  // tokens; the message names the phase.
  static StatusOr<WorkloadStream> Create(std::vector<WorkloadPhase> phases);

  int num_layers() const { return num_layers_; }
  int num_experts() const { return num_experts_; }
  int top_k() const { return top_k_; }
  const std::vector<LayerId>& layer_ids() const { return layer_ids_; }
  int num_phases() const { return static_cast<int>(phases_.size()); }
  const WorkloadPhase& phase(int i) const { return phases_[i].spec; }
  int total_steps() const { return total_steps_; }
  // The phase the next step belongs to (num_phases() once finished).
  int current_phase() const { return phase_index_; }

  // Fills `out` with the next step's stats, one per layer; false once every phase is done.
  bool Next(std::vector<LayerStats>* out);

  // What a planner knows of a phase in hindsight (the static and oracle placements): per layer,
  // the expected load of one step, and for token-level phases the tokens the phase replays (at
  // most `max_tokens`).
  std::vector<LayerStats> PhaseProfile(int phase, int max_tokens = 8192) const;

 private:
  struct Phase {
    WorkloadPhase spec;
    bool tokens = false;
    int64_t num_tokens = 0;                     // token-level: tokens in the trace
    int64_t window_begin = 0, window_size = 0;  // token-level: the replayed window
    std::vector<std::vector<ExpertId>> ids;     // token-level: [layer][token * top_k + k]
    std::vector<double> weights;                // count-only: [layer][expert] frequencies
    std::vector<double> step_load;              // count-only: expected load of one step
  };
  void FillTokens(const Phase& phase, int64_t offset, int count,
                  std::vector<LayerStats>* out) const;

  std::vector<Phase> phases_;
  int num_layers_ = 0;
  int num_experts_ = 0;
  int top_k_ = 0;
  std::vector<LayerId> layer_ids_;
  int total_steps_ = 0;
  int phase_index_ = 0;
  int step_in_phase_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace grace
