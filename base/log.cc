#include "base/log.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "base/text.h"

namespace lazyfs {
namespace {

LogLevel InitialLevel() {
  const char* env = std::getenv("LAZYFS_LOG");
  if (env == nullptr) return LogLevel::kWarn;
  if (!strcmp(env, "debug")) return LogLevel::kDebug;
  if (!strcmp(env, "info")) return LogLevel::kInfo;
  if (!strcmp(env, "error")) return LogLevel::kError;
  if (!strcmp(env, "off")) return LogLevel::kOff;
  return LogLevel::kWarn;
}

std::atomic<LogLevel>& Level() {
  static std::atomic<LogLevel> level{InitialLevel()};
  return level;
}

}  // namespace

LogLevel GetLogLevel() { return Level().load(std::memory_order_relaxed); }
void SetLogLevel(LogLevel level) { Level().store(level, std::memory_order_relaxed); }

void LogMessage(LogLevel level, const char* tag, const char* format, ...) {
  static constexpr const char* kNames[] = {"debug", "info", "warn", "error", "off"};
  char line[2048];
  int n = std::snprintf(line, sizeof(line), "lazyfs[%s] %s: ", tag,
                        kNames[static_cast<int>(level)]);
  va_list ap;
  va_start(ap, format);
  if (n > 0 && static_cast<size_t>(n) < sizeof(line)) {
    std::vsnprintf(line + n, sizeof(line) - n, format, ap);
  }
  va_end(ap);
  // One write per line so concurrent threads do not interleave within a line; what a message
  // quotes from an image or a registry cannot break the line or steer a terminal.
  std::fprintf(stderr, "%s\n", EscapeBytes(line, Escape::kMessage).c_str());
}

}  // namespace lazyfs
