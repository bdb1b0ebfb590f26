// gracectl trace info|convert|synth|from-scenario, and bench trace-read: the command-line face of
// core's trace importers, native format and synthetic generator.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "core/native_trace.h"
#include "core/synthetic_trace.h"
#include "core/trace_import.h"
#include "core/trace_summary.h"
#include "tools/commands.h"
#include "tools/scenario.h"
#include "tools/scenario_trace.h"

namespace grace::tools {
namespace {

// Bad input (a file that cannot be read or does not parse) is exit status 2, anything else 1.
[[noreturn]] void Fail(const std::string& command, const Status& status) {
  std::fprintf(stderr, "gracectl %s: %s\n", command.c_str(), status.message().c_str());
  const StatusCode c = status.code();
  const bool bad_input =
      c == StatusCode::kInvalidArgument || c == StatusCode::kDataLoss || c == StatusCode::kNotFound;
  throw CommandExit{bad_input ? 2 : 1};
}

template <typename T>
T OrFail(const std::string& command, StatusOr<T> value) {
  if (!value.ok()) Fail(command, value.status());
  return std::move(value).value();
}

void OrFail(const std::string& command, const Status& status) {
  if (!status.ok()) Fail(command, status);
}

nlohmann::json InfoJson(const Trace& trace, const TraceSummary& s) {
  const TraceInfo& info = trace.info;
  nlohmann::json j;
  j["files"] = info.sources;
  j["format"] = info.format;
  j["model"] = info.model;
  j["domain"] = info.domain;
  j["kind"] = TraceKindName(info.kind);
  j["layers"] = info.num_layers();
  j["layer_ids"] = info.layer_ids;
  j["experts"] = info.num_experts;
  j["top_k"] = info.top_k;
  j["steps"] = s.steps;
  if (info.kind == TraceKind::kTokens) j["tokens"] = s.tokens;
  j["assignments"] = s.assignments;
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerSummary& l : s.layers) {
    layers.push_back({{"layer", l.layer},
                      {"assignments", l.assignments},
                      {"hottest_expert", l.hottest},
                      {"hottest_load", l.hottest_load},
                      {"mean_load", l.mean_load},
                      {"hottest_over_mean", l.hottest_over_mean}});
  }
  j["per_layer"] = layers;
  nlohmann::json dropped = nlohmann::json::array();
  int64_t dropped_total = 0;
  for (const DroppedRecords& d : trace.dropped) {
    dropped.push_back({{"count", d.count}, {"reason", d.reason}});
    dropped_total += d.count;
  }
  j["dropped"] = dropped;
  j["dropped_total"] = dropped_total;
  nlohmann::json cross = nlohmann::json::array();
  for (const CrossLayerCounts& c : trace.cross_layer) {
    double total = 0;
    for (double v : c.matrix) total += v;
    cross.push_back({{"from_layer", c.from_layer}, {"to_layer", c.to_layer}, {"total", total}});
  }
  j["cross_layer"] = cross;
  j["notes"] = trace.notes;
  return j;
}

void PrintInfoText(const Trace& trace, const TraceSummary& s) {
  const TraceInfo& info = trace.info;
  std::printf("format   %s\n", info.format.c_str());
  if (!info.model.empty()) std::printf("model    %s\n", info.model.c_str());
  if (!info.domain.empty()) std::printf("domain   %s\n", info.domain.c_str());
  std::printf("kind     %s\n", TraceKindName(info.kind));
  std::printf("shape    %d layers x %d experts, top-%d%s\n", info.num_layers(), info.num_experts,
              info.top_k, info.top_k == 0 ? " (unknown)" : "");
  std::printf("steps    %lld\n", static_cast<long long>(s.steps));
  if (info.kind == TraceKind::kTokens)
    std::printf("tokens   %lld\n", static_cast<long long>(s.tokens));
  std::printf("assignments %.0f\n", s.assignments);
  std::printf("%8s %16s %8s %14s %10s\n", "layer", "assignments", "hottest", "mean load",
              "hot/mean");
  for (const LayerSummary& l : s.layers) {
    std::printf("%8d %16.0f %8d %14.1f %10.2f\n", l.layer, l.assignments, l.hottest, l.mean_load,
                l.hottest_over_mean);
  }
  for (const DroppedRecords& d : trace.dropped)
    std::printf("dropped  %lld: %s\n", static_cast<long long>(d.count), d.reason.c_str());
  for (const CrossLayerCounts& c : trace.cross_layer)
    std::printf("cross-layer %d->%d\n", c.from_layer, c.to_layer);
  for (const std::string& n : trace.notes) std::printf("note     %s\n", n.c_str());
}

// Writes a synthetic trace, reads it back `repeats` times and returns the median ids per second.
double MeasureTraceRead(int experts, int64_t target_ids, int repeats, int64_t* ids_out) {
  SyntheticTraceOptions o;
  o.experts = experts;
  o.top_k = 8;
  o.layers = 4;
  o.tokens_per_step = 4096;
  o.steps = 8;
  o.phases = 1;
  o.gate_weights = false;
  const Trace distinct = SynthesizeTrace(o);
  const int64_t ids_per_step = int64_t{o.layers} * o.tokens_per_step * o.top_k;
  const int64_t steps = std::max<int64_t>(1, target_ids / ids_per_step);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("grace-trace-read-" + std::to_string(getpid()) + ".gtrace"))
                               .string();
  auto writer = OrFail("bench trace-read", NativeTraceWriter::Create(path, distinct.info));
  for (int64_t s = 0; s < steps; ++s) {
    OrFail("bench trace-read", writer.Append(distinct.steps[s % distinct.steps.size()]));
  }
  OrFail("bench trace-read", writer.Close());
  auto reader = OrFail("bench trace-read", NativeTraceReader::Open(path));
  std::vector<double> rates;
  TraceStep step;
  int64_t checksum = 0;
  for (int r = 0; r <= repeats; ++r) {  // the first pass warms the page cache and is not timed
    OrFail("bench trace-read", reader.Rewind());
    const auto start = std::chrono::steady_clock::now();
    int64_t ids = 0;
    while (OrFail("bench trace-read", reader.Next(&step))) {
      ids += static_cast<int64_t>(step.tokens.expert_ids.size());
      checksum += step.tokens.expert_ids.back();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    *ids_out = ids;
    if (r > 0) rates.push_back(static_cast<double>(ids) / seconds);
  }
  std::filesystem::remove(path);
  if (checksum == -1) std::puts("");  // keeps the reads from being optimised away
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace

void AddTraceCommands(CLI::App& app, CLI::App& bench) {
  CLI::App* trace = app.add_subcommand("trace", "import, inspect, convert and synthesise traces");
  trace->require_subcommand(1);

  // trace info
  {
    auto* cmd = trace->add_subcommand("info", "what a trace holds (files of one trace together)");
    auto files = std::make_shared<std::vector<std::string>>();
    auto json = std::make_shared<bool>(false);
    auto options = std::make_shared<ImportOptions>();
    cmd->add_option("files", *files, "trace files (any supported format)")->required();
    cmd->add_flag("--json", *json, "print JSON");
    cmd->add_option("--experts", options->num_experts,
                    "experts per layer when the files do not say");
    cmd->callback([files, json, options]() {
      Trace trace = OrFail("trace info", ImportTraces(*files, *options));
      const TraceSummary summary = SummarizeTrace(trace);
      if (*json) {
        std::cout << InfoJson(trace, summary).dump(2) << "\n";
      } else {
        PrintInfoText(trace, summary);
      }
    });
  }

  // trace convert
  {
    auto* cmd = trace->add_subcommand("convert", "import traces and write grace's native format");
    auto files = std::make_shared<std::vector<std::string>>();
    auto out = std::make_shared<std::string>();
    auto options = std::make_shared<ImportOptions>();
    cmd->add_option("files", *files, "trace files (any supported format)")->required();
    cmd->add_option("-o,--output", *out, "native trace to write")->required();
    cmd->add_option("--experts", options->num_experts,
                    "experts per layer when the files do not say");
    auto tokens_per_step = std::make_shared<int>(0);
    cmd->add_option("--tokens-per-step", *tokens_per_step,
                    "cut token-level steps again into steps of N tokens (0: as recorded)");
    cmd->callback([files, out, options, tokens_per_step]() {
      Trace trace = OrFail("trace convert", ImportTraces(*files, *options));
      if (*tokens_per_step > 0) {
        OrFail("trace convert --tokens-per-step", RechunkTokenSteps(*tokens_per_step, &trace));
      }
      OrFail("trace convert", WriteNativeTrace(*out, trace));
      std::printf("wrote %s: %zu steps, %d layers x %d experts\n", out->c_str(), trace.steps.size(),
                  trace.info.num_layers(), trace.info.num_experts);
    });
  }

  // trace synth
  {
    auto* cmd = trace->add_subcommand("synth", "write a synthetic token-level trace");
    auto o = std::make_shared<SyntheticTraceOptions>();
    auto out = std::make_shared<std::string>();
    auto no_weights = std::make_shared<bool>(false);
    cmd->add_option("-o,--output", *out, "native trace to write")->required();
    cmd->add_option("--experts", o->experts, "experts per layer")->capture_default_str();
    cmd->add_option("--top-k", o->top_k, "experts per token")->capture_default_str();
    cmd->add_option("--layers", o->layers, "MoE layers")->capture_default_str();
    cmd->add_option("--steps", o->steps, "steps")->capture_default_str();
    cmd->add_option("--tokens-per-step", o->tokens_per_step, "tokens per step")
        ->capture_default_str();
    cmd->add_option("--skew", o->zipf_skew, "Zipf exponent of expert popularity")
        ->capture_default_str();
    cmd->add_option("--clusters", o->clusters, "groups of co-activated experts")
        ->capture_default_str();
    cmd->add_option("--cluster-strength", o->cluster_strength,
                    "chance a further choice stays in the first choice's group")
        ->capture_default_str();
    cmd->add_option("--phases", o->phases, "phases; each rotates the hot experts")
        ->capture_default_str();
    cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
    cmd->add_flag("--no-weights", *no_weights, "leave out gate weights");
    cmd->callback([o, out, no_weights]() {
      o->gate_weights = !*no_weights;
      if (const std::string problem = CheckSyntheticTraceOptions(*o); !problem.empty()) {
        Fail("trace synth", InvalidArgument(problem));
      }
      const Trace trace = SynthesizeTrace(*o);
      OrFail("trace synth", WriteNativeTrace(*out, trace));
      std::printf("wrote %s: %d steps x %d tokens, %d layers x %d experts, top-%d\n", out->c_str(),
                  o->steps, o->tokens_per_step, o->layers, o->experts, o->top_k);
    });
  }

  // trace from-scenario
  {
    auto* cmd = trace->add_subcommand(
        "from-scenario",
        "write a scenario's phases as one token-level trace (tools/scenario_trace.h)");
    auto scenario_path = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto o = std::make_shared<ScenarioTraceOptions>();
    auto seed = std::make_shared<uint64_t>(0);
    cmd->add_option("--scenario", *scenario_path, "scenario TOML (tools/scenario.h)")->required();
    cmd->add_option("-o,--output", *out, "native trace to write")->required();
    CLI::Option* layers = cmd->add_option("--layers", o->layers,
                                          "model layer ids to keep, e.g. 0,7,15 (default: all)")
                              ->delimiter(',');
    cmd->add_option("--max-layers", o->max_layers, "keep at most N layers, spread evenly")
        ->excludes(layers);
    cmd->add_option("--steps-scale", o->steps_scale, "multiplies every phase's steps (at least 1)")
        ->capture_default_str();
    cmd->add_option("--tokens-per-step", o->tokens_per_step,
                    "tokens per step of every phase (default: each phase's)");
    cmd->add_flag("--match-shares", o->match_shares,
                  "count-only sources: keep each expert's share (hot experts are otherwise "
                  "flattened by top-k without replacement)");
    CLI::Option* seed_option =
        cmd->add_option("--seed", *seed, "mixed into every phase's seed (default: theirs alone)");
    cmd->callback([scenario_path, out, o, seed, seed_option]() {
      if (seed_option->count() > 0) o->seed = *seed;
      const Scenario scenario = OrFail("trace from-scenario", LoadScenario(*scenario_path));
      const size_t phases = scenario.phases.size();
      auto progress = [phases](const ScenarioPhaseReport& r) {
        std::fprintf(stderr, "phase %d/%zu %s: steps [%lld, %lld) x %d tokens, ", r.phase, phases,
                     r.source.c_str(), static_cast<long long>(r.first_step),
                     static_cast<long long>(r.first_step + r.steps), r.tokens_per_step);
        if (r.token_level) {
          std::fprintf(stderr, "replayed tokens [%lld, %lld)",
                       static_cast<long long>(r.window_begin),
                       static_cast<long long>(r.window_end));
        } else {
          std::fprintf(stderr, "sampled; L1(sampled share, source share) per layer:");
          for (double l1 : r.share_l1) std::fprintf(stderr, " %.4f", l1);
        }
        std::fprintf(stderr, " (%.2f s)\n", r.seconds);
      };
      const ScenarioTraceSummary s =
          OrFail("trace from-scenario", WriteScenarioTrace(scenario, *o, *out, progress));
      std::string layer_ids;
      for (LayerId id : s.layer_ids)
        layer_ids += (layer_ids.empty() ? "" : ",") + std::to_string(id);
      std::printf(
          "wrote %s: %lld steps, %lld tokens, %zu layer%s (%s) x %d experts, top-%d, %llu bytes\n",
          out->c_str(), static_cast<long long>(s.steps), static_cast<long long>(s.tokens),
          s.layer_ids.size(), s.layer_ids.size() == 1 ? "" : "s", layer_ids.c_str(), s.num_experts,
          s.top_k, static_cast<unsigned long long>(s.bytes));
    });
  }

  // bench trace-read
  {
    auto* cmd =
        bench.add_subcommand("trace-read", "native trace read speed, expert ids per second");
    auto json = std::make_shared<bool>(false);
    auto experts = std::make_shared<int>(256);
    auto ids = std::make_shared<int64_t>(32 << 20);
    auto repeats = std::make_shared<int>(5);
    cmd->add_flag("--json", *json, "print JSON");
    cmd->add_option("--experts", *experts, "experts per layer (id width follows)")
        ->capture_default_str();
    cmd->add_option("--ids", *ids, "expert ids in the trace")->capture_default_str();
    cmd->add_option("--repeats", *repeats, "timed reads; the median is reported")
        ->capture_default_str();
    cmd->callback([json, experts, ids, repeats]() {
      if (*experts < 8 || *experts > 65536 || *ids < 1 || *repeats < 1) {
        Fail("bench trace-read",
             InvalidArgument("--experts in [8, 65536], --ids and --repeats >= 1"));
      }
      int64_t read = 0;
      const double rate = MeasureTraceRead(*experts, *ids, *repeats, &read);
      if (*json) {
        std::cout << nlohmann::json{{"ids_per_s", rate},
                                    {"ids", read},
                                    {"experts", *experts},
                                    {"repeats", *repeats}}
                         .dump()
                  << "\n";
      } else {
        std::printf(
            "native trace read: %.1f M expert ids/s (median of %d reads of %lld ids, %d "
            "experts, one core)\n",
            rate / 1e6, *repeats, static_cast<long long>(read), *experts);
      }
    });
  }
}

}  // namespace grace::tools
