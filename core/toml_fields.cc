#include "core/toml_fields.h"

#include <sstream>

namespace grace {
namespace {

std::string LineSuffix(const toml::node* node) {
  if (node == nullptr || !node->source().begin) return "";
  return " (line " + std::to_string(node->source().begin.line) + ")";
}

}  // namespace

std::string TomlFields::Where(std::string_view key) const {
  std::string where = source_ + ": ";
  if (!table_name_.empty()) where += "[" + table_name_ + "].";
  where += std::string(key);
  return where + LineSuffix(table_.get(key));
}

Status TomlFields::RejectUnknown(std::initializer_list<std::string_view> allowed) const {
  for (const auto& [key, node] : table_) {
    bool known = false;
    for (std::string_view a : allowed) known = known || key.str() == a;
    if (!known) {
      std::string list;
      for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return InvalidArgument(Where(key.str()) + ": unknown key (known keys: " + list + ")");
    }
  }
  return Status::Ok();
}

Status TomlFields::Int(std::string_view key, int64_t fallback, int64_t min, int64_t max,
                       int64_t* out, bool required) const {
  const toml::node* node = table_.get(key);
  if (node == nullptr) {
    if (required) return InvalidArgument(Where(key) + ": required key is missing");
    *out = fallback;
    return Status::Ok();
  }
  std::optional<int64_t> v = node->value<int64_t>();
  if (!v || !node->is_integer()) {
    return InvalidArgument(Where(key) + ": expected an integer");
  }
  if (*v < min || *v > max) {
    std::ostringstream msg;
    msg << Where(key) << ": " << *v << " is out of range [" << min << ", " << max << "]";
    return InvalidArgument(msg.str());
  }
  *out = *v;
  return Status::Ok();
}

Status TomlFields::Int(std::string_view key, int fallback, int min, int max, int* out,
                       bool required) const {
  int64_t wide = 0;
  GRACE_RETURN_IF_ERROR(Int(key, int64_t{fallback}, int64_t{min}, int64_t{max}, &wide, required));
  *out = static_cast<int>(wide);
  return Status::Ok();
}

Status TomlFields::Double(std::string_view key, double fallback, double min, double max,
                          double* out, bool required) const {
  const toml::node* node = table_.get(key);
  if (node == nullptr) {
    if (required) return InvalidArgument(Where(key) + ": required key is missing");
    *out = fallback;
    return Status::Ok();
  }
  if (!node->is_number()) return InvalidArgument(Where(key) + ": expected a number");
  double v = node->value<double>().value_or(0.0);
  if (!(v >= min && v <= max)) {
    std::ostringstream msg;
    msg << Where(key) << ": " << v << " is out of range [" << min << ", " << max << "]";
    return InvalidArgument(msg.str());
  }
  *out = v;
  return Status::Ok();
}

Status TomlFields::String(std::string_view key, std::string fallback, std::string* out,
                          bool required) const {
  const toml::node* node = table_.get(key);
  if (node == nullptr) {
    if (required) return InvalidArgument(Where(key) + ": required key is missing");
    *out = std::move(fallback);
    return Status::Ok();
  }
  if (!node->is_string()) return InvalidArgument(Where(key) + ": expected a string");
  *out = *node->value<std::string>();
  return Status::Ok();
}

Status TomlFields::Bool(std::string_view key, bool fallback, bool* out) const {
  const toml::node* node = table_.get(key);
  if (node == nullptr) {
    *out = fallback;
    return Status::Ok();
  }
  if (!node->is_boolean()) return InvalidArgument(Where(key) + ": expected true or false");
  *out = *node->value<bool>();
  return Status::Ok();
}

StatusOr<toml::table> ParseTomlText(std::string_view text, const std::string& source_name) {
  // Debian's toml++ is built with exceptions: this is the one place they are caught.
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& err) {
    std::ostringstream msg;
    msg << source_name << ":" << err.source().begin.line << ":" << err.source().begin.column << ": "
        << err.description();
    return InvalidArgument(msg.str());
  }
}

}  // namespace grace
