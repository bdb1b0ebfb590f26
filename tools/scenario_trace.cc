#include "tools/scenario_trace.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <span>

#include "core/native_trace.h"
#include "policy/load_sampling.h"

namespace grace::tools {
namespace {

// How one scenario phase becomes steps of the written trace.
struct PhasePlan {
  const WorkloadPhase* spec = nullptr;
  std::string where;  // "<scenario>: phase <n> (<source>)", for messages
  bool token_level = false;
  std::vector<int> layer_index;  // per kept layer, its index in the source trace
  int steps = 0;
  int tokens_per_step = 0;
  uint64_t seed = 0;
  int64_t window_begin = 0, window_end = 0;  // token-level: the replayed tokens
};

std::string JoinLayers(const std::vector<LayerId>& ids) {
  std::string out;
  for (LayerId id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

std::string ShortNumber(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

// SplitMix64's finaliser: spreads --seed over every bit before it meets a phase's seed.
uint64_t MixSeed(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The layers to keep: options.layers, or the first phase's, thinned to options.max_layers.
StatusOr<std::vector<LayerId>> KeptLayers(const Scenario& scenario,
                                          const ScenarioTraceOptions& options) {
  if (!options.layers.empty()) {
    std::vector<LayerId> sorted = options.layers;  // the trace lists layers in model order
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      return InvalidArgument("layers " + JoinLayers(options.layers) + ": a layer is named twice");
    }
    return sorted;
  }
  const std::vector<LayerId>& all = scenario.phases.front().trace.info.layer_ids;
  const int n = static_cast<int>(all.size());
  if (options.max_layers <= 0 || options.max_layers >= n) return all;
  std::vector<LayerId> kept;
  for (int i = 0; i < options.max_layers; ++i) {
    kept.push_back(options.max_layers == 1 ? all[0] : all[i * (n - 1) / (options.max_layers - 1)]);
  }
  return kept;
}

StatusOr<std::vector<PhasePlan>> PlanPhases(const Scenario& scenario,
                                            const ScenarioTraceOptions& options,
                                            const std::vector<LayerId>& kept, int* experts,
                                            int* top_k) {
  std::vector<PhasePlan> plans;
  for (size_t i = 0; i < scenario.phases.size(); ++i) {
    const WorkloadPhase& spec = scenario.phases[i];
    const TraceInfo& info = spec.trace.info;
    PhasePlan plan;
    plan.spec = &spec;
    plan.where = scenario.path + ": phase " + std::to_string(i + 1) + " (" + spec.name + ")";
    plan.token_level = info.kind == TraceKind::kTokens;
    const int k = spec.top_k > 0 ? spec.top_k : info.top_k;
    if (k <= 0) {
      return InvalidArgument(plan.where + ": the source does not record top_k; set top_k");
    }
    if (plan.token_level && k != info.top_k) {
      return InvalidArgument(plan.where + ": top_k of a token-level source is the trace's (" +
                             std::to_string(info.top_k) + "), not " + std::to_string(k));
    }
    if (k > info.num_experts) {
      return InvalidArgument(plan.where + ": top_k " + std::to_string(k) + " exceeds its " +
                             std::to_string(info.num_experts) + " experts");
    }
    if (i == 0) {
      *experts = info.num_experts;
      *top_k = k;
    } else if (info.num_experts != *experts || k != *top_k) {
      return InvalidArgument(plan.where + ": " + std::to_string(info.num_experts) +
                             " experts, top-" + std::to_string(k) + ", but " + plans[0].where +
                             " has " + std::to_string(*experts) + " experts, top-" +
                             std::to_string(*top_k));
    }
    if (options.layers.empty() && info.layer_ids != scenario.phases[0].trace.info.layer_ids) {
      return InvalidArgument(plan.where + ": layers " + JoinLayers(info.layer_ids) + ", but " +
                             plans[0].where + " has layers " +
                             JoinLayers(scenario.phases[0].trace.info.layer_ids) +
                             "; keep only layers every phase has (--layers)");
    }
    for (LayerId id : kept) {
      const auto it = std::find(info.layer_ids.begin(), info.layer_ids.end(), id);
      if (it == info.layer_ids.end()) {
        return InvalidArgument(plan.where + ": no layer " + std::to_string(id) +
                               " (the source has layers " + JoinLayers(info.layer_ids) + ")");
      }
      plan.layer_index.push_back(static_cast<int>(it - info.layer_ids.begin()));
    }
    plan.steps =
        static_cast<int>(std::clamp(std::round(spec.steps * options.steps_scale), 1.0, 1e9));
    plan.tokens_per_step =
        options.tokens_per_step > 0 ? options.tokens_per_step : spec.tokens_per_step;
    plan.seed = options.seed ? MixSeed(*options.seed, spec.seed) : spec.seed;
    if (plan.token_level) {
      const int64_t tokens = spec.trace.TotalTokens();
      plan.window_begin = spec.first_token;
      plan.window_end = spec.last_token > 0 ? spec.last_token : tokens;
      if (plan.window_begin < 0 || plan.window_end > tokens ||
          plan.window_begin >= plan.window_end) {
        return InvalidArgument(plan.where + ": token window [" + std::to_string(plan.window_begin) +
                               ", " + std::to_string(plan.window_end) +
                               ") is not inside the source's " + std::to_string(tokens) +
                               " tokens");
      }
    }
    plans.push_back(std::move(plan));
  }
  return plans;
}

// Count-only phase: every step's tokens drawn from the phase's (jittered) per-expert shares.
Status WriteSampledPhase(const PhasePlan& plan, int experts, int top_k, bool match_shares,
                         NativeTraceWriter* writer, TraceStep* step, ScenarioPhaseReport* report) {
  const int layers = static_cast<int>(plan.layer_index.size());
  const auto loads = plan.spec->trace.LayerLoads();
  std::vector<std::vector<double>> shares(layers);
  for (int l = 0; l < layers; ++l) {
    const std::vector<double>& load = loads[plan.layer_index[l]];
    double total = 0;
    for (double v : load) total += std::max(0.0, v);
    for (double v : load) {
      shares[l].push_back(total > 0 ? std::max(0.0, v) / total : 1.0 / experts);
    }
  }
  // What the tokens are drawn by: the shares themselves, or weights whose top-k draws give
  // the shares back.
  std::vector<std::vector<double>> weights = shares;
  if (match_shares) {
    for (int l = 0; l < layers; ++l) weights[l] = MatchTopKShares(shares[l], top_k);
  }
  std::mt19937_64 rng(plan.seed);
  std::vector<double> jittered(experts);
  std::vector<std::vector<int64_t>> sampled(layers, std::vector<int64_t>(experts, 0));
  const size_t per_layer = static_cast<size_t>(plan.tokens_per_step) * top_k;
  for (int s = 0; s < plan.steps; ++s) {
    for (int l = 0; l < layers; ++l) {
      std::span<const double> drawn_by = weights[l];
      if (plan.spec->noise > 0) {
        JitterWeights(drawn_by, plan.spec->noise, rng, jittered);
        drawn_by = jittered;
      }
      std::span<ExpertId> ids(step->tokens.expert_ids.data() + l * per_layer, per_layer);
      SampleTopKTokens(drawn_by, top_k, plan.tokens_per_step, rng, ids);
      for (ExpertId e : ids) ++sampled[l][e];
    }
    GRACE_RETURN_IF_ERROR(writer->Append(*step).WithContext(plan.where));
  }
  for (int l = 0; l < layers; ++l) {
    const double total = static_cast<double>(plan.steps) * static_cast<double>(per_layer);
    double l1 = 0;
    for (int e = 0; e < experts; ++e) l1 += std::abs(sampled[l][e] / total - shares[l][e]);
    report->share_l1.push_back(l1);
  }
  return Status::Ok();
}

// Token-level phase: the source's tokens in order, wrapping within the scenario's window.
Status WriteReplayedPhase(const PhasePlan& plan, int top_k, NativeTraceWriter* writer,
                          TraceStep* step, ScenarioPhaseReport* report) {
  const int layers = static_cast<int>(plan.layer_index.size());
  std::vector<std::vector<ExpertId>> source(layers);  // [kept layer][token * top_k + k]
  for (const TraceStep& s : plan.spec->trace.steps) {
    if (s.kind != TraceKind::kTokens) continue;
    const size_t per_layer = static_cast<size_t>(s.tokens.num_tokens) * top_k;
    for (int l = 0; l < layers; ++l) {
      const ExpertId* ids = s.tokens.expert_ids.data() + plan.layer_index[l] * per_layer;
      source[l].insert(source[l].end(), ids, ids + per_layer);
    }
  }
  report->window_begin = plan.window_begin;
  report->window_end = plan.window_end;
  const int64_t window = plan.window_end - plan.window_begin;
  const size_t per_layer = static_cast<size_t>(plan.tokens_per_step) * top_k;
  int64_t offset = 0;
  for (int s = 0; s < plan.steps; ++s) {
    for (int l = 0; l < layers; ++l) {
      ExpertId* out = step->tokens.expert_ids.data() + l * per_layer;
      for (int t = 0; t < plan.tokens_per_step; ++t) {
        const int64_t token = plan.window_begin + (offset + t) % window;
        std::copy_n(source[l].data() + token * top_k, top_k, out + static_cast<size_t>(t) * top_k);
      }
    }
    offset += plan.tokens_per_step;
    GRACE_RETURN_IF_ERROR(writer->Append(*step).WithContext(plan.where));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<ScenarioTraceSummary> WriteScenarioTrace(
    const Scenario& scenario, const ScenarioTraceOptions& options, const std::string& out_path,
    const std::function<void(const ScenarioPhaseReport&)>& on_phase) {
  if (scenario.phases.empty()) return InvalidArgument(scenario.path + ": no phases");
  if (!(options.steps_scale > 0) || !std::isfinite(options.steps_scale)) {
    return InvalidArgument("steps scale must be a positive number");
  }
  if (options.tokens_per_step < 0 || options.tokens_per_step > (1 << 24)) {
    return InvalidArgument("tokens per step must be in [1, 16777216]");
  }
  if (options.max_layers < 0) return InvalidArgument("the maximum number of layers is negative");
  if (!options.layers.empty() && options.max_layers > 0) {
    return InvalidArgument("name layers or a maximum number of layers, not both");
  }
  ScenarioTraceSummary summary;
  GRACE_ASSIGN_OR_RETURN(summary.layer_ids, KeptLayers(scenario, options));
  GRACE_ASSIGN_OR_RETURN(
      std::vector<PhasePlan> plans,
      PlanPhases(scenario, options, summary.layer_ids, &summary.num_experts, &summary.top_k));

  TraceInfo info;
  info.format = "scenario";
  info.model = scenario.phases[0].trace.info.model;
  info.kind = TraceKind::kTokens;
  info.num_experts = summary.num_experts;
  info.top_k = summary.top_k;
  info.layer_ids = summary.layer_ids;
  info.sources = {scenario.path};
  NativeTraceExtras extras;
  int64_t first_step = 0;
  for (const PhasePlan& plan : plans) {
    const TraceInfo& source = plan.spec->trace.info;
    if (!source.domain.empty()) info.domain += (info.domain.empty() ? "" : "->") + source.domain;
    info.sources.insert(info.sources.end(), source.sources.begin(), source.sources.end());
    std::string note = "steps [" + std::to_string(first_step) + ", " +
                       std::to_string(first_step + plan.steps) + "): " + plan.where + ", " +
                       std::to_string(plan.tokens_per_step) + " tokens per step, ";
    note += plan.token_level
                ? "its tokens replayed"
                : "sampled from its counts (top-" + std::to_string(summary.top_k) +
                      " without replacement" +
                      (options.match_shares ? " matching the shares" : "") + ", seed " +
                      std::to_string(plan.seed) + ", noise " + ShortNumber(plan.spec->noise) + ")";
    extras.notes.push_back(std::move(note));
    first_step += plan.steps;
  }
  GRACE_ASSIGN_OR_RETURN(NativeTraceWriter writer,
                         NativeTraceWriter::Create(out_path, info, extras));

  const int layers = static_cast<int>(summary.layer_ids.size());
  TraceStep step;  // reused: only the ids change from step to step
  step.kind = TraceKind::kTokens;
  for (size_t i = 0; i < plans.size(); ++i) {
    const PhasePlan& plan = plans[i];
    const auto start = std::chrono::steady_clock::now();
    ScenarioPhaseReport report;
    report.phase = static_cast<int>(i) + 1;
    report.source = plan.spec->name;
    report.token_level = plan.token_level;
    report.first_step = summary.steps;
    report.steps = plan.steps;
    report.tokens_per_step = plan.tokens_per_step;
    step.tokens.num_tokens = plan.tokens_per_step;
    step.tokens.expert_ids.resize(static_cast<size_t>(layers) * plan.tokens_per_step *
                                  summary.top_k);
    GRACE_RETURN_IF_ERROR(plan.token_level
                              ? WriteReplayedPhase(plan, summary.top_k, &writer, &step, &report)
                              : WriteSampledPhase(plan, summary.num_experts, summary.top_k,
                                                  options.match_shares, &writer, &step, &report));
    summary.steps += plan.steps;
    summary.tokens += static_cast<int64_t>(plan.steps) * plan.tokens_per_step;
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_phase) on_phase(report);
    summary.phases.push_back(std::move(report));
  }
  GRACE_RETURN_IF_ERROR(writer.Close());
  std::error_code error;
  summary.bytes = std::filesystem::file_size(out_path, error);
  return summary;
}

}  // namespace grace::tools
