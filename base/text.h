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

// A name from an image, quoted for a message or a terminal: in double quotes, with control
// characters, DEL, '"' and '\' as \xNN, cut after `max` bytes with "...". An image cannot move
// the cursor or forge a line with its names.
std::string QuoteName(std::string_view name, size_t max = 300);

}  // namespace lazyfs
