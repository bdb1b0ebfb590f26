// The per-format importers behind ImportTraces (core/trace_import.h), each parsing one file's
// text already in memory, or its JSONL records as they are read (JsonLines, streamed). Internal
// to core: callers use ImportTraces. Each returns a Trace whose
// info.sources is {path}; errors name path, line and field. Pure functions.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/json_text.h"
#include "core/status.h"
#include "core/trace.h"
#include "core/trace_import.h"

namespace grace {

// What grace knows of models whose files do not carry all of it (experts, top-k).
struct KnownModel {
  const char* match;  // lower-case substring of a model name
  const char* name;
  int num_experts;
  int top_k;
};
const KnownModel* FindKnownModel(std::string_view model_name);

// Experts per layer: the file's figure, else options, else the known model, else max id + 1.
// Fails when an id does not fit the figure chosen. Adds a note when the figure was inferred.
Status ResolveNumExperts(int from_file, int max_id_seen, const ImportOptions& options,
                         const std::string& path, Trace* trace);

StatusOr<Trace> ImportVllmJsonl(const JsonLines& lines, const std::string& path,
                                const ImportOptions& options);
StatusOr<Trace> ImportRoutingJsonl(const JsonLines& lines, const std::string& path,
                                   const ImportOptions& options);

// SGLang's expert distribution recorder dump (a torch.save file, any recorder mode).
StatusOr<Trace> ImportSglangRecorderDump(std::string bytes, const std::string& path);
// vLLM's routed experts: saved API responses (JSONL, or one whole JSON document in `whole`)...
StatusOr<Trace> ImportVllmRoutedExperts(const JsonLines& lines, const nlohmann::json* whole,
                                        const std::string& path, const ImportOptions& options);
// ... or one np.save()d [tokens, layers, k] array.
StatusOr<Trace> ImportVllmRoutedExpertsNpy(std::string_view bytes, const std::string& path,
                                           const ImportOptions& options);

// Whole-file JSON formats, given the parsed document.
StatusOr<Trace> ImportSglangLogicalCount(const nlohmann::json& doc, const std::string& path);
StatusOr<Trace> ImportExpertCounts(const nlohmann::json& doc, const std::string& path);
StatusOr<Trace> ImportCrossLayerCounts(const nlohmann::json& doc, const std::string& path);
StatusOr<Trace> ImportExpertPopularity(const nlohmann::json& doc, const std::string& path);
StatusOr<Trace> ImportExpertUsageByLayer(const nlohmann::json& doc, const std::string& path);

// Adds notes on count-only layers that are all zero and on per-layer totals that differ.
void NoteCountAnomalies(Trace* trace);

}  // namespace grace
