#include "policy/online_workload.h"

#include <algorithm>

#include "policy/load_sampling.h"

namespace grace {

StatusOr<WorkloadStream> WorkloadStream::Create(std::vector<WorkloadPhase> phases) {
  if (phases.empty()) return InvalidArgument("a workload needs at least one phase");
  WorkloadStream stream;
  for (size_t i = 0; i < phases.size(); ++i) {
    WorkloadPhase& spec = phases[i];
    const std::string where = "phase " + std::to_string(i + 1) + " (" + spec.name + ")";
    const TraceInfo& info = spec.trace.info;
    if (spec.top_k <= 0) spec.top_k = info.top_k;
    if (spec.top_k <= 0) {
      return InvalidArgument(where + ": the source does not record top_k; set top_k");
    }
    if (spec.steps <= 0 || spec.tokens_per_step <= 0) {
      return InvalidArgument(where + ": steps and tokens_per_step must be positive");
    }
    if (i == 0) {
      stream.num_layers_ = info.num_layers();
      stream.num_experts_ = info.num_experts;
      stream.top_k_ = spec.top_k;
      stream.layer_ids_ = info.layer_ids;
    } else if (info.num_layers() != stream.num_layers_ || info.num_experts != stream.num_experts_ ||
               spec.top_k != stream.top_k_) {
      return InvalidArgument(
          where + ": " + std::to_string(info.num_layers()) + " layers x " +
          std::to_string(info.num_experts) + " experts, top-" + std::to_string(spec.top_k) +
          ", but phase 1 has " + std::to_string(stream.num_layers_) + " x " +
          std::to_string(stream.num_experts_) + ", top-" + std::to_string(stream.top_k_));
    }
    if (stream.num_layers_ <= 0 || stream.num_experts_ <= 0) {
      return InvalidArgument(where + ": the source has no layers or experts");
    }
    Phase phase;
    phase.tokens = info.kind == TraceKind::kTokens;
    const int layers = stream.num_layers_, experts = stream.num_experts_;
    if (phase.tokens) {
      if (info.top_k != spec.top_k) {
        return InvalidArgument(where + ": top_k of a token-level source is the trace's (" +
                               std::to_string(info.top_k) + ")");
      }
      phase.ids.assign(layers, {});
      for (const TraceStep& step : spec.trace.steps) {
        if (step.kind != TraceKind::kTokens) continue;
        const size_t per_layer = static_cast<size_t>(step.tokens.num_tokens) * spec.top_k;
        for (int l = 0; l < layers; ++l) {
          const ExpertId* ids = step.tokens.expert_ids.data() + l * per_layer;
          phase.ids[l].insert(phase.ids[l].end(), ids, ids + per_layer);
        }
        phase.num_tokens += step.tokens.num_tokens;
      }
      if (phase.num_tokens == 0) return InvalidArgument(where + ": the source has no tokens");
      const int64_t end = spec.last_token > 0 ? spec.last_token : phase.num_tokens;
      if (spec.first_token < 0 || end > phase.num_tokens || spec.first_token >= end) {
        return InvalidArgument(where + ": token window [" + std::to_string(spec.first_token) +
                               ", " + std::to_string(end) + ") is not inside the trace's " +
                               std::to_string(phase.num_tokens) + " tokens");
      }
      phase.window_begin = spec.first_token;
      phase.window_size = end - spec.first_token;
    } else {
      phase.weights.assign(static_cast<size_t>(layers) * experts, 0.0);
      const auto loads = spec.trace.LayerLoads();
      phase.step_load.assign(phase.weights.size(), 0.0);
      for (int l = 0; l < layers; ++l) {
        double total = 0;
        for (int e = 0; e < experts; ++e) total += std::max(0.0, loads[l][e]);
        for (int e = 0; e < experts; ++e) {
          const double w = total > 0 ? std::max(0.0, loads[l][e]) / total : 1.0 / experts;
          phase.weights[static_cast<size_t>(l) * experts + e] = w;
          phase.step_load[static_cast<size_t>(l) * experts + e] =
              w * spec.tokens_per_step * spec.top_k;
        }
      }
      spec.trace.steps.clear();  // the frequencies are all a count-only phase needs
      spec.trace.steps.shrink_to_fit();
    }
    stream.total_steps_ += spec.steps;
    phase.spec = std::move(spec);
    stream.phases_.push_back(std::move(phase));
  }
  stream.rng_.seed(stream.phases_[0].spec.seed);
  return stream;
}

// Copies `count` tokens of the phase's window, starting `offset` tokens into it (wrapping).
void WorkloadStream::FillTokens(const Phase& phase, int64_t offset, int count,
                                std::vector<LayerStats>* out) const {
  const int k = top_k_;
  for (int l = 0; l < num_layers_; ++l) {
    LayerStats& s = (*out)[l];
    LayerTokens tokens;
    tokens.top_k = k;
    tokens.expert_ids.resize(static_cast<size_t>(count) * k);
    for (int t = 0; t < count; ++t) {
      const int64_t src = phase.window_begin + (offset + t) % phase.window_size;
      std::copy_n(phase.ids[l].data() + src * k, k, tokens.expert_ids.data() + t * k);
    }
    for (ExpertId e : tokens.expert_ids) {
      if (e >= 0 && e < num_experts_) s.load[e] += 1.0;
    }
    s.tokens = std::move(tokens);
  }
}

bool WorkloadStream::Next(std::vector<LayerStats>* out) {
  while (phase_index_ < num_phases() && step_in_phase_ >= phases_[phase_index_].spec.steps) {
    ++phase_index_;
    step_in_phase_ = 0;
    if (phase_index_ < num_phases()) rng_.seed(phases_[phase_index_].spec.seed);
  }
  if (phase_index_ >= num_phases()) return false;
  const Phase& phase = phases_[phase_index_];
  out->assign(num_layers_, LayerStats{});
  for (int l = 0; l < num_layers_; ++l) {
    (*out)[l].layer_id = layer_ids_.empty() ? l : layer_ids_[l];
    (*out)[l].top_k = top_k_;
    (*out)[l].load.assign(num_experts_, 0.0);
  }
  const int tokens = phase.spec.tokens_per_step;
  if (phase.tokens) {
    FillTokens(phase, static_cast<int64_t>(step_in_phase_) * tokens, tokens, out);
  } else {
    const std::vector<double> counts = SampleCountStep(
        phase.weights, num_experts_, static_cast<int64_t>(tokens) * top_k_, phase.spec.noise, rng_);
    for (int l = 0; l < num_layers_; ++l) {
      std::copy_n(counts.data() + static_cast<size_t>(l) * num_experts_, num_experts_,
                  (*out)[l].load.data());
    }
  }
  ++step_in_phase_;
  return true;
}

std::vector<LayerStats> WorkloadStream::PhaseProfile(int phase_index, int max_tokens) const {
  const Phase& phase = phases_[phase_index];
  std::vector<LayerStats> out(num_layers_);
  for (int l = 0; l < num_layers_; ++l) {
    out[l].layer_id = layer_ids_.empty() ? l : layer_ids_[l];
    out[l].top_k = top_k_;
    out[l].load.assign(num_experts_, 0.0);
  }
  if (phase.tokens) {
    const int64_t replayed = static_cast<int64_t>(phase.spec.steps) * phase.spec.tokens_per_step;
    const int count = static_cast<int>(
        std::min<int64_t>({replayed, static_cast<int64_t>(max_tokens), phase.window_size}));
    FillTokens(phase, 0, count, &out);
    // Loads of one step, so that they compare with the count-only phases' profiles.
    const double scale = static_cast<double>(phase.spec.tokens_per_step) / count;
    for (LayerStats& s : out) {
      for (double& v : s.load) v *= scale;
    }
  } else {
    for (int l = 0; l < num_layers_; ++l) {
      std::copy_n(phase.step_load.data() + static_cast<size_t>(l) * num_experts_, num_experts_,
                  out[l].load.data());
    }
  }
  return out;
}

}  // namespace grace
