#include "core/json_text.h"

#include <charconv>
#include <cmath>

namespace grace {

std::string JsonWhere::ToString() const {
  return line > 0 ? path + ":" + std::to_string(line) : path;
}

Status ParseJsonLine(std::string_view line, const JsonWhere& where, const JsonRecordFn& fn) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return Status::Ok();
  GRACE_ASSIGN_OR_RETURN(nlohmann::json record, ParseJson(line, where));
  return fn(record, where);
}

Status ForEachJsonLine(std::string_view text, const std::string& path, const JsonRecordFn& fn) {
  JsonWhere where{path, 0};
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++where.line;
    GRACE_RETURN_IF_ERROR(ParseJsonLine(line, where, fn));
  }
  return Status::Ok();
}

StatusOr<nlohmann::json> ParseJson(std::string_view text, const JsonWhere& where) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based and points one past the offending character.
    const size_t byte = e.byte > 0 ? e.byte - 1 : 0;
    std::string position;
    if (where.line > 0) {
      position = "column " + std::to_string(byte + 1);
    } else {
      int64_t line = 1;
      size_t line_start = 0;
      for (size_t i = 0; i < byte && i < text.size(); ++i) {
        if (text[i] == '\n') {
          ++line;
          line_start = i + 1;
        }
      }
      position = "line " + std::to_string(line) + ", column " +
                 std::to_string(byte - line_start + 1) + " (byte offset " + std::to_string(byte) +
                 ")";
    }
    std::string what = e.what();
    // nlohmann's text repeats the position; keep only its description.
    if (const size_t colon = what.find(": syntax error"); colon != std::string::npos) {
      what = what.substr(colon + 2);
    }
    if (byte >= text.size()) what = "truncated: " + what;
    return InvalidArgument(where.ToString() + ": invalid JSON at " + position + ": " + what);
  }
}

StatusOr<const nlohmann::json*> JsonMember(const nlohmann::json& object, const char* key,
                                           const JsonWhere& where) {
  if (!object.is_object()) return InvalidArgument(where.ToString() + ": expected a JSON object");
  auto it = object.find(key);
  if (it == object.end()) {
    return InvalidArgument(where.ToString() + ": missing field \"" + key + "\"");
  }
  return &*it;
}

StatusOr<int64_t> JsonInt(const nlohmann::json& object, const char* key, const JsonWhere& where) {
  GRACE_ASSIGN_OR_RETURN(const nlohmann::json* value, JsonMember(object, key, where));
  if (!value->is_number_integer()) {
    return InvalidArgument(where.ToString() + ": field \"" + key + "\": expected an integer, got " +
                           value->dump());
  }
  return value->get<int64_t>();
}

Status JsonIntArray(const nlohmann::json& value, const std::string& field, int64_t max_exclusive,
                    const JsonWhere& where, std::vector<int32_t>* out) {
  if (!value.is_array()) {
    return InvalidArgument(where.ToString() + ": field \"" + field +
                           "\": expected an array of integers");
  }
  for (const nlohmann::json& v : value) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
        (max_exclusive > 0 && v.get<int64_t>() >= max_exclusive)) {
      std::string range = max_exclusive > 0 ? "[0, " + std::to_string(max_exclusive) + ")" : ">= 0";
      return InvalidArgument(where.ToString() + ": field \"" + field + "\": expected integers in " +
                             range + ", got " + v.dump());
    }
    out->push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return Status::Ok();
}

Status JsonNumberArray(const nlohmann::json& value, const std::string& field, bool non_negative,
                       const JsonWhere& where, std::vector<double>* out) {
  if (!value.is_array()) {
    return InvalidArgument(where.ToString() + ": field \"" + field +
                           "\": expected an array of numbers");
  }
  for (const nlohmann::json& v : value) {
    const double d = v.is_number() ? v.get<double>() : NAN;
    if (!std::isfinite(d) || (non_negative && d < 0)) {
      return InvalidArgument(where.ToString() + ": field \"" + field + "\": expected " +
                             (non_negative ? "non-negative " : "") + "numbers, got " + v.dump());
    }
    out->push_back(d);
  }
  return Status::Ok();
}

StatusOr<int64_t> ParseKeyInt(const std::string& key, const std::string& field,
                              const JsonWhere& where) {
  int64_t value = -1;
  auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), value);
  if (ec != std::errc() || ptr != key.data() + key.size() || value < 0) {
    return InvalidArgument(where.ToString() + ": field \"" + field +
                           "\": expected non-negative integer keys, got \"" + key + "\"");
  }
  return value;
}

}  // namespace grace
