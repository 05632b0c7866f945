#include "base/text.h"

namespace lazyfs {

namespace {
constexpr char kHexDigits[] = "0123456789abcdef";
}  // namespace

std::string HexEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHexDigits[c >> 4];
    out += kHexDigits[c & 15];
  }
  return out;
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  std::string out(dir == "/" ? "" : dir);
  out += '/';
  out += name;
  return out;
}

std::string QuoteName(std::string_view name, size_t max) {
  std::string out = "\"";
  for (unsigned char c : name.substr(0, max)) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      out += "\\x";
      out += kHexDigits[c >> 4];
      out += kHexDigits[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (name.size() > max) out += "...";
  return out + "\"";
}

}  // namespace lazyfs
