// libFuzzer target: image references and platforms as users type them.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fetch/fetch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ref = lazyfs::fetch::ImageRef::Parse(text);
  if (ref.ok()) {
    // What ToString prints must parse back to the same reference.
    auto again = lazyfs::fetch::ImageRef::Parse(ref->ToString());
    if (!again.ok() || again->ToString() != ref->ToString()) __builtin_trap();
  }
  (void)lazyfs::fetch::Platform::Parse(text);
  return 0;
}
