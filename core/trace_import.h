// ImportTraces: reads recorded expert routing, in any of the formats of ../shared/traces/real
// (and grace's native format), into one Trace.
//
// Each file's format is detected from its content:
//   native           grace's binary format (core/native_trace.h), by its magic
//   vllm-jsonl       vLLM router logger: a "meta" line, then one "route" record per token
//   routing-jsonl    one line per (token, layer): {"problem_id","token_idx","layer","experts",...}
//   sglang-logical-count   {"logical_count": [[layers x experts]]} (or [steps][layers][experts])
//   expert-counts    {"model","kind","domain","layers","num_experts","counts":{"<layer>":[...]}}
//   expert-counts-crosslayer   {"layers":["a->b",...],"matrices":{"a->b":[[E x E]]}}
//   expert-popularity  {"total_input_tokens", "expert_popularity": [[layers x experts]]}
//   expert-usage-by-layer  {"num_experts","layers","expert_usage_by_layer":{"<l>":{"<e>":n}}}
//
// Several files make one trace: vLLM single-layer files of one run are joined into a multi-layer
// trace (real token n is the same token in every file); other files with the same model, experts,
// layers and kind follow one another as successive steps, in the order given. Files that do not
// fit together fail naming the file. Records an importer skips are listed in Trace::dropped with
// the reason; facts worth a user's attention (all-zero layers, uneven per-layer totals) in notes.
// Token-level importers leave TokenBatch::home_rank empty (the block rule applies later).
//
// Errors are InvalidArgument or DataLoss values naming the file, the line (or byte offset) and the
// field. Thread-compatible: independent calls may run on different threads.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "core/trace.h"

namespace grace {

struct ImportOptions {
  // Experts per layer when the file does not say: 0 takes them from the model when it is known,
  // else from the largest id seen plus one.
  int num_experts = 0;
  // vLLM: a leading run of records with one constant top-k at least this long is the engine's
  // start-up profiling pass and is dropped (0 keeps it). Real decoding never repeats one top-k
  // hundreds of times in a row; the profiling pass does for thousands of records.
  int min_profiling_run = 64;
};

StatusOr<Trace> ImportTraces(const std::vector<std::string>& paths,
                             const ImportOptions& options = {});

// The format ImportTraces would detect for a file ("vllm-jsonl", ...), or an error naming it.
StatusOr<std::string> DetectTraceFormat(const std::string& path);

}  // namespace grace
