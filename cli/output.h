// What the commands print, escaped once here (docs/security.md, "Output"): strings from an
// image or a registry (names, link targets, xattr names, references, error text) never break
// a JSON document and never reach a terminal as control characters.
//
// The one idea for JSON: strings stay as they are while they are valid UTF-8, and an object
// holding any outside string that is not gets "bytes_escaped": true and all of its outside
// strings written EscapeBytes(Escape::kUtf8) (each byte outside UTF-8, and each '\', as
// "\xNN"), which UnescapeBytes reverses. Lossless, and a reader needs one rule per object.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::cli {

// The field an escaped object carries.
inline constexpr const char* kBytesEscaped = "bytes_escaped";

// A JSON object under construction. Fields lazyfs made itself (numbers, modes, digests, nested
// objects that are built the same way) go in through json(); outside strings through Text*,
// so that Take() can escape them together. Not thread-safe.
class JsonObject {
 public:
  nlohmann::json& json() { return j_; }
  // A string from an image or a registry.
  void Text(std::string key, std::string value);
  // An array of such strings.
  void TextArray(std::string key, std::vector<std::string> values);
  // An object whose keys are such strings (xattr names) and whose values lazyfs made.
  void TextKeys(std::string key, std::vector<std::pair<std::string, nlohmann::json>> members);
  // The object, its outside strings escaped when any of them is not UTF-8.
  nlohmann::json Take() &&;

 private:
  nlohmann::json j_ = nlohmann::json::object();
  std::vector<std::pair<std::string, std::string>> text_;
  std::vector<std::pair<std::string, std::vector<std::string>>> arrays_;
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, nlohmann::json>>>> keyed_;
};

// `j` as every --json output prints it, indented by 2. Outside strings went through
// JsonObject; should one have been missed, it is printed with U+FFFD for its bad bytes rather
// than ending the process (nlohmann's dump throws on invalid UTF-8 by default).
void PrintJson(const nlohmann::json& j);

// A name, link target or path for a line of text: Escape::kTerminal.
std::string TextName(std::string_view name);

// "2023-11-14 22:13:20", UTC, for a time clamped to index::ClampTime's range.
std::string TimeText(int64_t sec);

// ----- entries, as ls, stat and diff print them -----

// 'd', 'l', 'c', 'b', 'p', 's' or '-' for a file type in st_mode.
char TypeChar(uint32_t mode);
// "drwxr-sr-t" as ls -l prints it.
std::string ModeString(uint32_t mode);
// "0755": the permission bits as JSON and the text lines give them.
std::string OctalMode(uint32_t mode);
bool IsDevice(uint32_t mode);

// An entry of `tree` as --json gives it: path, type, mode, owner, size, links, mtime (clamped),
// inode, rdev, target, digest, xattrs (values in hex); outside strings escaped as above. A
// target, digest or xattr list the tree fails to give is left out.
nlohmann::json AttrJson(const index::Tree& tree, const index::Attr& a, const std::string& path);

// One `ls -ln` line for an entry called `name`: mode, links, uid, gid, size or device numbers,
// mtime (clamped, UTC), name and symlink target escaped for a terminal.
std::string LongLine(const index::Tree& tree, const index::Attr& a, const std::string& name);

}  // namespace lazyfs::cli
