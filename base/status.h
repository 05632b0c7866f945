// Status and Result: how every lazyfs module reports failure.
//
// A Status carries a canonical code (the kind of failure, which decides retries and errno), a
// message that each layer prefixes with its own context ("while fetching blob sha256:ab12..: "),
// and optionally the exact errno that caused it. Result<T> is a value or a non-OK Status. No
// exceptions cross module boundaries; errno appears only at the FUSE edge (fs/).
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace lazyfs {

enum class StatusCode {
  kOk = 0,
  kNotFound,            // the object does not exist (ENOENT)
  kInvalidArgument,     // malformed input: a bad reference, manifest, tar entry (EINVAL)
  kUnavailable,         // retryable trouble: network, registry 5xx, timeouts (EIO)
  kDataLoss,            // a digest mismatch or corrupt data (EIO)
  kPermissionDenied,    // credentials refused, access denied (EACCES)
  kAlreadyExists,       // (EEXIST)
  kResourceExhausted,   // a cap was hit or the disk is full (ENOSPC)
  kFailedPrecondition,  // the operation does not apply to this object (ENOTDIR, EISDIR, ...)
  kUnimplemented,       // an unsupported format or feature (EOPNOTSUPP)
  kInternal,            // a bug or an unexpected library failure (EIO)
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message, int error_number = 0)
      : code_(code), error_number_(error_number), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // The exact errno behind the failure, or 0 when the code alone says it.
  int error_number() const { return error_number_; }

  // "message" for errors, "OK" otherwise.
  std::string ToString() const;
  // Returns a copy whose message is "context: message". OK stays OK.
  Status WithContext(std::string_view context) const;
  // Marks a deliberately ignored status.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  int error_number_ = 0;
  std::string message_;
};

inline Status NotFoundError(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status InvalidArgumentError(std::string m) {
  return Status(StatusCode::kInvalidArgument, std::move(m));
}
inline Status UnavailableError(std::string m) {
  return Status(StatusCode::kUnavailable, std::move(m));
}
inline Status DataLossError(std::string m) { return Status(StatusCode::kDataLoss, std::move(m)); }
inline Status PermissionDeniedError(std::string m) {
  return Status(StatusCode::kPermissionDenied, std::move(m));
}
inline Status ResourceExhaustedError(std::string m) {
  return Status(StatusCode::kResourceExhausted, std::move(m));
}
inline Status FailedPreconditionError(std::string m) {
  return Status(StatusCode::kFailedPrecondition, std::move(m));
}
inline Status UnimplementedError(std::string m) {
  return Status(StatusCode::kUnimplemented, std::move(m));
}
inline Status InternalError(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }

// The type checks every Tree makes, one code and errno each, so a caller (the FUSE adapter, a
// CLI message) never guesses which check failed. `what` names the object ("/etc/passwd").
inline Status NotADirectoryError(std::string what) {
  return Status(StatusCode::kFailedPrecondition, std::move(what) + ": not a directory", ENOTDIR);
}
inline Status IsADirectoryError(std::string what) {
  return Status(StatusCode::kFailedPrecondition, std::move(what) + ": is a directory", EISDIR);
}
inline Status NotASymlinkError(std::string what) {
  return Status(StatusCode::kFailedPrecondition, std::move(what) + ": not a symlink", EINVAL);
}
inline Status NotARegularFileError(std::string what) {
  return Status(StatusCode::kFailedPrecondition, std::move(what) + ": not a regular file", EINVAL);
}

// A Status for a failed system call: "what: strerror(err)", code chosen from err, errno kept.
Status ErrnoError(int err, std::string_view what);

// A value of T, or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(const T& value) : v_(value) {}                            // NOLINT: implicit by design
  Result(T&& value) : v_(std::move(value)) {}                      // NOLINT
  Result(Status status) : v_(std::move(status)) {                  // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result built from OK");
  }
  template <typename U,
            typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                        !std::is_same_v<std::decay_t<U>, Status> &&
                                        !std::is_same_v<std::decay_t<U>, Result<T>>>>
  Result(U&& value) : v_(T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  void IgnoreError() const {}

 private:
  std::variant<T, Status> v_;
};

namespace internal {
inline const Status& AsStatus(const Status& s) { return s; }
template <typename T>
const Status& AsStatus(const Result<T>& r) { return r.status(); }
}  // namespace internal

}  // namespace lazyfs

#define LAZYFS_CONCAT_INNER(a, b) a##b
#define LAZYFS_CONCAT(a, b) LAZYFS_CONCAT_INNER(a, b)

// Returns the status of `expr` (a Status or a Result) from the current function if it failed.
#define LAZYFS_RETURN_IF_ERROR(expr)                                               \
  do {                                                                             \
    const auto& lazyfs_status_ = (expr);                                           \
    if (!::lazyfs::internal::AsStatus(lazyfs_status_).ok())                        \
      return ::lazyfs::internal::AsStatus(lazyfs_status_);                         \
  } while (0)

// `LAZYFS_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result or returns its status.
#define LAZYFS_ASSIGN_OR_RETURN(lhs, expr) \
  LAZYFS_ASSIGN_OR_RETURN_IMPL(LAZYFS_CONCAT(lazyfs_result_, __LINE__), lhs, expr)
#define LAZYFS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
