// JSON parsing for the trace importers: converts nlohmann-json's parse errors to Status in this
// one place, and gives checked field reads whose errors name the file, the line and the field
// ("moe_layer0.jsonl:12: field \"topk_ids\": expected an array of 4 integers").
//
//   JsonWhere where{path, line};   // line 0 for a whole-file JSON document
//   GRACE_ASSIGN_OR_RETURN(nlohmann::json doc, ParseJson(text, where));
//   GRACE_ASSIGN_OR_RETURN(int64_t layer, JsonInt(doc, "layer", where));
//
// Pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace grace {

// Where a JSON value came from: a file and, for JSONL, its 1-based line (0: the whole file).
struct JsonWhere {
  std::string path;
  int64_t line = 0;
  std::string ToString() const;  // "path:12" or "path"
};

// Parses one JSON document; the error names the line and column (or the byte offset in a JSONL
// line) where the text stopped being JSON.
StatusOr<nlohmann::json> ParseJson(std::string_view text, const JsonWhere& where);

using JsonRecordFn = std::function<Status(const nlohmann::json&, const JsonWhere&)>;

// Calls `fn(record, where)` for each non-blank line of the JSONL `text` (from `path`), parsed, in
// order; stops at the first error, which a parse error reports naming the line.
Status ForEachJsonLine(std::string_view text, const std::string& path, const JsonRecordFn& fn);

// The same for one line (its 1-based number in `where`): a blank line is skipped.
Status ParseJsonLine(std::string_view line, const JsonWhere& where, const JsonRecordFn& fn);

// A JSONL document the importers walk record by record, from memory or streamed from a file
// (core/trace_import.cc), so that a JSONL trace is never held whole in memory.
using JsonLines = std::function<Status(const JsonRecordFn&)>;

// Field reads: each fails naming `where`, the field and what was expected.
StatusOr<const nlohmann::json*> JsonMember(const nlohmann::json& object, const char* key,
                                           const JsonWhere& where);
StatusOr<int64_t> JsonInt(const nlohmann::json& object, const char* key, const JsonWhere& where);
// Reads an array of integers in [0, max_exclusive) (no upper bound when max_exclusive <= 0).
Status JsonIntArray(const nlohmann::json& value, const std::string& field, int64_t max_exclusive,
                    const JsonWhere& where, std::vector<int32_t>* out);
// Reads an array of finite numbers (>= 0 when non_negative).
Status JsonNumberArray(const nlohmann::json& value, const std::string& field, bool non_negative,
                       const JsonWhere& where, std::vector<double>* out);

// Reads a non-negative integer written as a JSON object key ("12").
StatusOr<int64_t> ParseKeyInt(const std::string& key, const std::string& field,
                              const JsonWhere& where);

}  // namespace grace
