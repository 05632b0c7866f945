// Small text helpers every module needs once: hex, path joining, and names quoted for messages.
#pragma once

#include <string>
#include <string_view>

namespace lazyfs {

// Lower-case hex of raw bytes ("\x01\xab" -> "01ab").
std::string HexEncode(std::string_view bytes);

// "/" + name under the root, dir + "/" + name elsewhere: joins the absolute path of a directory
// in a tree with one of its entries.
std::string JoinPath(std::string_view dir, std::string_view name);

// A name from an image, quoted for a message or a terminal: in double quotes, with control
// characters, DEL, '"' and '\' as \xNN, cut after `max` bytes with "...". An image cannot move
// the cursor or forge a line with its names.
std::string QuoteName(std::string_view name, size_t max = 300);

}  // namespace lazyfs
