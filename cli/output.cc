#include "cli/output.h"

#include <sys/stat.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "base/text.h"
#include "index/tree.h"

namespace lazyfs::cli {

void JsonObject::Text(std::string key, std::string value) {
  text_.emplace_back(std::move(key), std::move(value));
}

void JsonObject::TextArray(std::string key, std::vector<std::string> values) {
  arrays_.emplace_back(std::move(key), std::move(values));
}

void JsonObject::TextKeys(std::string key,
                          std::vector<std::pair<std::string, nlohmann::json>> members) {
  keyed_.emplace_back(std::move(key), std::move(members));
}

nlohmann::json JsonObject::Take() && {
  bool utf8 = true;
  for (const auto& [key, value] : text_) utf8 = utf8 && IsUtf8(value);
  for (const auto& [key, values] : arrays_) {
    for (const std::string& v : values) utf8 = utf8 && IsUtf8(v);
  }
  for (const auto& [key, members] : keyed_) {
    for (const auto& m : members) utf8 = utf8 && IsUtf8(m.first);
  }
  // All of them or none, so a reader unescapes by the object's flag alone.
  const auto out = [utf8](std::string s) { return utf8 ? s : EscapeBytes(s, Escape::kUtf8); };
  for (auto& [key, value] : text_) j_[key] = out(std::move(value));
  for (auto& [key, values] : arrays_) {
    nlohmann::json a = nlohmann::json::array();
    for (std::string& v : values) a.push_back(out(std::move(v)));
    j_[key] = std::move(a);
  }
  for (auto& [key, members] : keyed_) {
    nlohmann::json o = nlohmann::json::object();
    for (auto& [name, value] : members) o[out(name)] = std::move(value);
    j_[key] = std::move(o);
  }
  if (!utf8) j_[kBytesEscaped] = true;
  return std::move(j_);
}

void PrintJson(const nlohmann::json& j) {
  const std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  std::printf("%s\n", text.c_str());
}

std::string TextName(std::string_view name) { return EscapeBytes(name, Escape::kTerminal); }

std::string TimeText(int64_t sec) {
  const time_t t = static_cast<time_t>(std::clamp(sec, index::kMinTimeSec, index::kMaxTimeSec));
  struct tm tm = {};
  char buf[32];
  if (gmtime_r(&t, &tm) == nullptr ||
      std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
    std::snprintf(buf, sizeof buf, "@%lld", static_cast<long long>(t));  // never reached
  }
  return buf;
}

char TypeChar(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'd';
    case S_IFLNK:
      return 'l';
    case S_IFCHR:
      return 'c';
    case S_IFBLK:
      return 'b';
    case S_IFIFO:
      return 'p';
    case S_IFSOCK:
      return 's';
    default:
      return '-';
  }
}

// "drwxr-sr-t" as ls -l prints it.
std::string ModeString(uint32_t mode) {
  std::string s(10, '-');
  s[0] = TypeChar(mode);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if (mode & (0400u >> i)) s[1 + i] = rwx[i];
  }
  auto special = [&](int pos, uint32_t bit, char set_exec, char set_noexec) {
    if (mode & bit) s[pos] = s[pos] == 'x' ? set_exec : set_noexec;
  };
  special(3, S_ISUID, 's', 'S');
  special(6, S_ISGID, 's', 'S');
  special(9, S_ISVTX, 't', 'T');
  return s;
}

bool IsDevice(uint32_t mode) { return S_ISCHR(mode) || S_ISBLK(mode); }

// "0755": the permission bits as JSON and the text lines give them.
std::string OctalMode(uint32_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", mode & 07777);
  return text;
}

// An entry as --json gives it; path, target and xattr names escaped as cli/output.h says.
nlohmann::json AttrJson(const index::Tree& tree, const index::Attr& a, const std::string& path) {
  JsonObject o;
  nlohmann::json& j = o.json();
  o.Text("path", path);
  j["type"] = std::string(1, TypeChar(a.mode));
  j["mode"] = OctalMode(a.mode);
  j["uid"] = a.uid;
  j["gid"] = a.gid;
  j["size"] = a.size;
  j["nlink"] = a.nlink;
  j["mtime"] = a.mtime().sec;
  j["mtime_nsec"] = a.mtime().nsec;
  j["ino"] = a.ino;
  if (IsDevice(a.mode)) j["rdev"] = {a.rdev_major, a.rdev_minor};
  if (a.is_symlink()) {
    if (auto t = tree.ReadLink(a.ino); t.ok()) o.Text("target", *t);
  }
  if (a.is_reg()) {
    if (auto d = tree.ContentDigest(a.ino); d.ok()) j["digest"] = d->ToString();
  }
  if (auto xs = tree.ListXattrs(a.ino); xs.ok() && !xs->empty()) {
    // Values are bytes; JSON strings must be UTF-8, so they are given in hex.
    std::vector<std::pair<std::string, nlohmann::json>> members;
    for (const auto& x : *xs) members.emplace_back(x.name, HexEncode(x.value));
    o.TextKeys("xattrs_hex", std::move(members));
  }
  return std::move(o).Take();
}

// One `ls -ln` line.
std::string LongLine(const index::Tree& tree, const index::Attr& a, const std::string& name) {
  char size[48];
  if (IsDevice(a.mode)) {
    std::snprintf(size, sizeof size, "%u, %u", a.rdev_major, a.rdev_minor);
  } else {
    std::snprintf(size, sizeof size, "%" PRIu64, a.size);
  }
  char head[160];
  std::snprintf(head, sizeof head, "%s %3u %5u %5u %10s %s ", ModeString(a.mode).c_str(), a.nlink,
                a.uid, a.gid, size, TimeText(a.mtime().sec).c_str());
  std::string line = head + TextName(name);
  if (a.is_symlink()) {
    if (auto t = tree.ReadLink(a.ino); t.ok()) line += " -> " + TextName(*t);
  }
  return line;
}

}  // namespace lazyfs::cli
