// Small text helpers every module needs once: hex, path joining, and names quoted for messages.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace lazyfs {

// Lower-case hex of raw bytes ("\x01\xab" -> "01ab").
std::string HexEncode(std::string_view bytes);

// "/" + name under the root, dir + "/" + name elsewhere: joins the absolute path of a directory
// in a tree with one of its entries.
std::string JoinPath(std::string_view dir, std::string_view name);

// The non-empty pieces of `text` between `sep`s: Split("/a//b/", '/') is {"a", "b"}.
std::vector<std::string> Split(std::string_view text, char sep);

// Base64 (RFC 4648) through OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock. Decoding takes the
// standard and the URL-safe alphabets, with or without '=' padding; anything else (a stray
// character, a length no encoding has) fails with InvalidArgument "invalid base64".
std::string Base64Encode(std::string_view data);
Result<std::string> Base64Decode(std::string_view text);

// True when `bytes` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
// past U+10FFFF), what a JSON string must hold.
bool IsUtf8(std::string_view bytes);

// Which bytes EscapeBytes writes as the four characters "\xNN" (lower-case hex). Every mode
// escapes the bytes that are not part of well-formed UTF-8, so the result always is.
enum class Escape {
  // Those and '\': lossless, UnescapeBytes gives the bytes back. JSON strings (where JSON's
  // own escaping then takes care of control characters).
  kUtf8,
  // Those, '\', and the characters a terminal obeys instead of showing: C0 controls (ESC and
  // newline among them), DEL and the C1 controls U+0080..U+009F. Names printed as text;
  // lossless too.
  kTerminal,
  // Control characters as kTerminal, but '\' kept: whole messages, whose names were already
  // quoted by QuoteName, printed on one line that an image or a registry cannot steer.
  kMessage,
};
std::string EscapeBytes(std::string_view bytes, Escape mode);

// The bytes EscapeBytes(kUtf8 or kTerminal) stood for: each "\xNN" back to its byte. Fails with
// InvalidArgument naming the offset of a '\' that does not start "\xNN".
Result<std::string> UnescapeBytes(std::string_view text);

// A name from an image, quoted for a message or a terminal: in double quotes, escaped as
// Escape::kTerminal plus '"' as \x22, cut after `max` bytes with "...". An image cannot move the
// cursor or forge a line with its names.
std::string QuoteName(std::string_view name, size_t max = 300);

}  // namespace lazyfs
