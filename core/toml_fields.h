// TomlFields: checked reads of one TOML table, shared by every config grace parses (topology,
// scenarios, agent and daemon configs), so that all of them report errors the same way:
// "<source>: [table].key: expected an integer in [1, 4096], got 0 (line 3)".
//
// Usage:
//   TomlFields f(*tbl, "graced.toml", "topology");
//   GRACE_RETURN_IF_ERROR(f.RejectUnknown({"nodes", "gpus_per_node"}));
//   GRACE_RETURN_IF_ERROR(f.Int("nodes", 1, 1, 4096, &topology.nodes));
//
// Not thread-safe; a stack object used while one config is parsed.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "core/status.h"

namespace grace {

class TomlFields {
 public:
  TomlFields(const toml::table& table, std::string source, std::string table_name)
      : table_(table), source_(std::move(source)), table_name_(std::move(table_name)) {}

  // Fails naming the first key that is not in `allowed`.
  Status RejectUnknown(std::initializer_list<std::string_view> allowed) const;

  // Each reads `key` into *out when present and checks its type and range; when absent, *out
  // keeps `fallback` (or the call fails if `required`).
  Status Int(std::string_view key, int64_t fallback, int64_t min, int64_t max, int64_t* out,
             bool required = false) const;
  Status Int(std::string_view key, int fallback, int min, int max, int* out,
             bool required = false) const;
  Status Double(std::string_view key, double fallback, double min, double max, double* out,
                bool required = false) const;
  Status String(std::string_view key, std::string fallback, std::string* out,
                bool required = false) const;
  Status Bool(std::string_view key, bool fallback, bool* out) const;

  // "<source>: [table].key" (with " (line N)" when the key exists), for callers' own checks.
  std::string Where(std::string_view key) const;

 private:
  const toml::table& table_;
  std::string source_;
  std::string table_name_;
};

// Parses TOML text, converting toml++'s parse error to a Status naming source, line and column.
StatusOr<toml::table> ParseTomlText(std::string_view text, const std::string& source_name);

}  // namespace grace
