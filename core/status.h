// Status and StatusOr: the error values grace returns at module boundaries.
//
// A Status is either ok or carries a code and a message a user can act on (file, line, field,
// what was expected). StatusOr<T> holds a T or a non-ok Status. Both are [[nodiscard]], so a
// dropped error is a compiler warning. Plain values: safe to copy and move between threads.
//
//   StatusOr<Topology> topo = ParseTopologyToml(text, "grace.toml");
//   if (!topo.ok()) return topo.status();
//   Use(*topo);
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace grace {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller's input is wrong (bad file, field, value)
  kNotFound,
  kDataLoss,     // truncated or corrupt data
  kUnavailable,  // a peer or resource is not there now; retrying may help
  kFailedPrecondition,
  kInternal,
  kAborted,
  kDeadlineExceeded,
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: trace.jsonl:12: ..." or "OK".
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context` and ": ".
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}
inline Status DataLoss(std::string message) {
  return Status(StatusCode::kDataLoss, std::move(message));
}
inline Status NotFound(std::string message) {
  return Status(StatusCode::kNotFound, std::move(message));
}
inline Status Unavailable(std::string message) {
  return Status(StatusCode::kUnavailable, std::move(message));
}
inline Status FailedPrecondition(std::string message) {
  return Status(StatusCode::kFailedPrecondition, std::move(message));
}
inline Status Internal(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}
inline Status Aborted(std::string message) {
  return Status(StatusCode::kAborted, std::move(message));
}
inline Status DeadlineExceeded(std::string message) {
  return Status(StatusCode::kDeadlineExceeded, std::move(message));
}

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "StatusOr built from an ok Status has no value");
    if (status_.ok()) status_ = Internal("StatusOr built from an ok Status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace grace

// Returns early from the enclosing function when `expr` (a Status) is not ok.
#define GRACE_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::grace::Status grace_status_ = (expr);        \
    if (!grace_status_.ok()) return grace_status_; \
  } while (false)

#define GRACE_CONCAT_INNER(a, b) a##b
#define GRACE_CONCAT(a, b) GRACE_CONCAT_INNER(a, b)
// GRACE_ASSIGN_OR_RETURN(auto x, MakeX()); returns the error, or binds the value.
#define GRACE_ASSIGN_OR_RETURN(lhs, expr)                                                         \
  auto GRACE_CONCAT(grace_or_, __LINE__) = (expr);                                                \
  if (!GRACE_CONCAT(grace_or_, __LINE__).ok()) return GRACE_CONCAT(grace_or_, __LINE__).status(); \
  lhs = std::move(GRACE_CONCAT(grace_or_, __LINE__)).value()
