#include "base/store_layout.h"

#include <unistd.h>

#include <cstdlib>

namespace lazyfs {

StoreLayout StoreLayout::At(const std::string& root) {
  return StoreLayout{root.empty() ? DefaultRoot() : root};
}

std::string StoreLayout::DefaultRoot() {
  if (const char* env = std::getenv("LAZYFS_STORE"); env && *env) return env;
  if (::geteuid() == 0) return "/var/lib/lazyfs";
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) {
    return std::string(xdg) + "/lazyfs";
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/share/lazyfs";
}

}  // namespace lazyfs
