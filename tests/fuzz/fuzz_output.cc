// libFuzzer target: what the commands print for an entry whose name, symlink target and xattr
// name are any bytes and whose mode and mtime are any numbers (cli/output.h). The JSON must
// dump without throwing and give the bytes back by its documented escaping; the ls -l line and
// every terminal escaping must hold nothing a terminal obeys.
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "base/text.h"
#include "cli/output.h"
#include "tests/support/memory_tree.h"

namespace {

using lazyfs::Escape;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// No C0 control, DEL or C1 control (as UTF-8 or as a bare byte), and valid UTF-8.
void CheckTerminalSafe(const std::string& text) {
  for (unsigned char c : text) Check(c >= 0x20 && c != 0x7f);
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    Check(!(text[i] == '\xc2' && static_cast<unsigned char>(text[i + 1]) < 0xa0));
  }
  Check(lazyfs::IsUtf8(text));
}

// The bytes a string of an escaped or unescaped object stands for.
std::string Bytes(const nlohmann::json& object, const std::string& text) {
  if (!object.value(lazyfs::cli::kBytesEscaped, false)) return text;
  auto bytes = lazyfs::UnescapeBytes(text);
  Check(bytes.ok());
  return *bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 16) return 0;
  int64_t sec;
  uint32_t nsec, mode;
  std::memcpy(&sec, data, 8);
  std::memcpy(&nsec, data + 8, 4);
  std::memcpy(&mode, data + 12, 4);
  const std::string raw(reinterpret_cast<const char*>(data) + 16, size - 16);

  for (Escape e : {Escape::kUtf8, Escape::kTerminal}) {
    auto back = lazyfs::UnescapeBytes(lazyfs::EscapeBytes(raw, e));
    Check(back.ok() && *back == raw);
  }
  CheckTerminalSafe(lazyfs::EscapeBytes(raw, Escape::kTerminal));
  CheckTerminalSafe(lazyfs::EscapeBytes(raw, Escape::kMessage));
  CheckTerminalSafe(lazyfs::QuoteName(raw));

  // A name a tree can hold: no '/' or NUL, not empty, "." or "..".
  std::string name = raw.substr(0, 255);
  for (char& c : name) {
    if (c == '/' || c == '\0') c = '_';
  }
  if (name.empty() || name == "." || name == "..") name += "_x";
  lazyfs::testing::MemNode node;
  node.path = "/" + name;
  const bool link = (mode & 1) != 0 && !raw.empty() && raw.find('\0') == std::string::npos;
  node.mode = (link ? S_IFLNK : S_IFREG) | (mode & 07777);
  node.mtime_sec = sec;
  node.mtime_nsec = nsec;
  node.data = link ? raw : "";
  node.xattrs["user." + raw] = raw;
  auto tree = lazyfs::testing::MemoryTree::Build({node});
  if (!tree.ok()) return 0;
  auto root = (*tree)->GetAttr(lazyfs::index::kRootIno);
  Check(root.ok());
  auto a = (*tree)->Lookup(root->ino, name);
  Check(a.ok());

  const nlohmann::json j = lazyfs::cli::AttrJson(**tree, *a, node.path);
  const nlohmann::json back = nlohmann::json::parse(j.dump());  // strict: throws on bad UTF-8
  Check(Bytes(back, back["path"].get<std::string>()) == node.path);
  if (link) Check(Bytes(back, back["target"].get<std::string>()) == raw);
  for (const auto& [key, value] : back["xattrs_hex"].items()) {
    Check(Bytes(back, key) == "user." + raw);
  }
  const int64_t shown = back["mtime"].get<int64_t>();
  Check(shown >= lazyfs::index::kMinTimeSec && shown <= lazyfs::index::kMaxTimeSec);
  CheckTerminalSafe(lazyfs::cli::LongLine(**tree, *a, name));
  CheckTerminalSafe(lazyfs::cli::TimeText(sec));
  return 0;
}
