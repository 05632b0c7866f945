#include "base/text.h"

#include <openssl/evp.h>

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

std::vector<std::string> Split(std::string_view text, char sep) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find(sep, i);
    if (j == std::string_view::npos) j = text.size();
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::string Base64Encode(std::string_view data) {
  std::string out((data.size() + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  std::string in(text);
  for (char& c : in) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  size_t pad = 0;
  while (!in.empty() && in.back() == '=' && pad < 2) {
    in.pop_back();
    ++pad;
  }
  if (in.size() % 4 == 1 || in.find('=') != std::string::npos) {
    return InvalidArgumentError("invalid base64");
  }
  // EVP_DecodeBlock wants whole quanta, and counts their padding as zero bytes.
  pad = (4 - in.size() % 4) % 4;
  in.append(pad, '=');
  std::string out(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return InvalidArgumentError("invalid base64");
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

namespace {

// The length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629's table), or 0.
size_t Utf8Length(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;  // overlong
    if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;  // overlong
    if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (b(i) < 0x80 || b(i) > 0xbf) return 0;
  }
  return n;
}

// C0 controls, DEL, and C1 controls (U+0080..U+009F, "\xc2\x80".."\xc2\x9f" in UTF-8).
bool IsControl(std::string_view seq) {
  const auto c = static_cast<unsigned char>(seq[0]);
  if (seq.size() == 1) return c < 0x20 || c == 0x7f;
  return seq.size() == 2 && c == 0xc2 && static_cast<unsigned char>(seq[1]) < 0xa0;
}

void AppendEscaped(std::string& out, std::string_view bytes) {
  for (unsigned char c : bytes) {
    out += "\\x";
    out += kHexDigits[c >> 4];
    out += kHexDigits[c & 15];
  }
}

// EscapeBytes, and '"' too when `quote` (QuoteName's).
std::string EscapeWith(std::string_view bytes, Escape mode, bool quote) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t n = Utf8Length(bytes.substr(i));
    if (n == 0) {
      AppendEscaped(out, bytes.substr(i, 1));  // not UTF-8: one byte at a time
      ++i;
      continue;
    }
    const std::string_view seq = bytes.substr(i, n);
    const bool escape = (mode != Escape::kUtf8 && IsControl(seq)) ||
                        (mode != Escape::kMessage && seq == "\\") || (quote && seq == "\"");
    if (escape) {
      AppendEscaped(out, seq);
    } else {
      out += seq;
    }
    i += n;
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool IsUtf8(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t n = Utf8Length(bytes.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string EscapeBytes(std::string_view bytes, Escape mode) {
  return EscapeWith(bytes, mode, /*quote=*/false);
}

Result<std::string> UnescapeBytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out += text[i];
      continue;
    }
    const bool room = i + 3 < text.size();
    const int hi = room ? HexValue(text[i + 2]) : -1;
    const int lo = room ? HexValue(text[i + 3]) : -1;
    if (text.substr(i + 1, 1) != "x" || hi < 0 || lo < 0) {
      return InvalidArgumentError("a '\\' at byte " + std::to_string(i) +
                                  " that does not start \"\\xNN\"");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 3;
  }
  return out;
}

std::string QuoteName(std::string_view name, size_t max) {
  std::string out = "\"" + EscapeWith(name.substr(0, max), Escape::kTerminal, /*quote=*/true);
  if (name.size() > max) out += "...";
  return out + "\"";
}

}  // namespace lazyfs
