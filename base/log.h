// Logging with a module tag: LAZYFS_LOG(kWarn, "fetch", "retrying %s", url.c_str()).
//
// Inner layers return errors instead of logging them; the edges (CLI, FUSE adapter) log once.
// Debug lines cost one branch when the level is above debug, and nothing in release builds.
#pragma once

#include <atomic>

namespace lazyfs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// The global threshold (default kWarn; LAZYFS_LOG=debug|info|warn|error|off overrides at start).
LogLevel GetLogLevel();
void SetLogLevel(LogLevel level);

void LogMessage(LogLevel level, const char* tag, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace lazyfs

#define LAZYFS_LOG(level, tag, ...)                                                   \
  do {                                                                                \
    if (::lazyfs::LogLevel::level >= ::lazyfs::GetLogLevel())                         \
      ::lazyfs::LogMessage(::lazyfs::LogLevel::level, tag, __VA_ARGS__);              \
  } while (0)

#ifdef NDEBUG
#define LAZYFS_DLOG(tag, ...) \
  do {                        \
  } while (0)
#else
#define LAZYFS_DLOG(tag, ...) LAZYFS_LOG(kDebug, tag, __VA_ARGS__)
#endif
