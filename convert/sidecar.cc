// The sidecar's JSON, both ways. Field order and spelling are what users and tools read (and
// what docs/materialize.md shows): nlohmann's ordered_json keeps the order written here.
#include "convert/sidecar.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/fd.h"

namespace lazyfs::convert {
namespace {

using Json = nlohmann::ordered_json;

std::string OctalMode(uint32_t mode) {
  char text[8];
  std::snprintf(text, sizeof(text), "%04o", mode);
  return text;
}

Json FilesJson(const std::vector<Sidecar::File>& files) {
  Json out = Json::array();
  for (const Sidecar::File& f : files) {
    out.push_back({{"guest_path", f.guest_path},
                   {"sha256", f.sha256},
                   {"size", f.size},
                   {"uid", f.uid},
                   {"gid", f.gid},
                   {"mode", OctalMode(f.mode)}});
  }
  return out;
}

Json ToJson(const Sidecar& s) {
  Json j;
  j["lazyfs_version"] = s.lazyfs_version;
  j["source"] = s.source;
  j["manifest_digest"] = s.manifest_digest;
  j["image"] = {{"file", s.image.file},     {"size", s.image.size},
                {"filesystem", "ext4"},     {"uuid", s.image.uuid},
                {"label", s.image.label},   {"read_only_layout", s.image.read_only_layout},
                {"inodes", s.image.inodes}, {"content_bytes", s.image.content_bytes}};
  if (!s.added_tars.empty()) {
    Json tars = Json::array();
    for (const Sidecar::Tar& t : s.added_tars) {
      tars.push_back({{"file", t.file}, {"sha256", t.sha256}});
    }
    j["added_tars"] = tars;
  }
  if (!s.additions.empty()) {
    j["additions"] = FilesJson(s.additions);
    if (s.additions_mtime) j["additions_mtime"] = *s.additions_mtime;  // verify rebuilds them
  }
  if (s.verity) {
    const Sidecar::Verity& v = *s.verity;
    j["verity"] = {
        {"format_version", 1},      {"hash_algorithm", "sha256"},   {"data_block_size", 4096},
        {"hash_block_size", 4096},  {"data_size", v.data_size},     {"data_blocks", v.data_blocks},
        {"hash_file", v.hash_file}, {"hash_offset", v.hash_offset}, {"hash_size", v.hash_size},
        {"salt", v.salt},           {"root_hash", v.root_hash}};
  }
  return j;
}

// A field a reader needs, failing with a message naming it.
template <typename T>
Result<T> Field(const Json& j, const char* section, const char* key, const std::string& path) {
  try {
    return j.at(section).at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    return InvalidArgumentError(path + ": missing or bad \"" + section + "." + key + "\"");
  }
}

Status ReadVerity(const Json& j, const std::string& path, Sidecar& s) {
  if (!j.contains("verity")) return Status::Ok();
  Sidecar::Verity v;
  LAZYFS_ASSIGN_OR_RETURN(v.hash_file, Field<std::string>(j, "verity", "hash_file", path));
  LAZYFS_ASSIGN_OR_RETURN(v.hash_offset, Field<uint64_t>(j, "verity", "hash_offset", path));
  LAZYFS_ASSIGN_OR_RETURN(v.root_hash, Field<std::string>(j, "verity", "root_hash", path));
  LAZYFS_ASSIGN_OR_RETURN(v.salt, Field<std::string>(j, "verity", "salt", path));
  const Json& jv = j["verity"];
  v.data_size = jv.value("data_size", uint64_t{0});
  v.data_blocks = jv.value("data_blocks", uint64_t{0});
  v.hash_size = jv.value("hash_size", uint64_t{0});
  s.verity = std::move(v);
  return Status::Ok();
}

// The additions, which older sidecars lack.
Status ReadAdditions(const Json& j, const std::string& path, Sidecar& s) {
  try {
    for (const Json& t : j.value("added_tars", Json::array())) {
      s.added_tars.push_back({t.at("file").get<std::string>(), t.at("sha256").get<std::string>()});
    }
    for (const Json& a : j.value("additions", Json::array())) {
      Sidecar::File f;
      f.guest_path = a.at("guest_path").get<std::string>();
      f.uid = a.at("uid").get<uint32_t>();
      f.gid = a.at("gid").get<uint32_t>();
      f.mode = static_cast<uint32_t>(std::stoul(a.at("mode").get<std::string>(), nullptr, 8));
      f.size = a.at("size").get<uint64_t>();
      f.sha256 = a.at("sha256").get<std::string>();
      s.additions.push_back(std::move(f));
    }
    if (j.contains("additions_mtime")) s.additions_mtime = j.at("additions_mtime").get<int64_t>();
  } catch (const std::exception& e) {  // nlohmann::json and std::stoul
    return InvalidArgumentError(path + ": bad \"added_tars\" or \"additions\": " + e.what());
  }
  return Status::Ok();
}

// What the sidecar says for people, which verify does not check.
void ReadInfo(const Json& j, Sidecar& s) {
  s.lazyfs_version = j.value("lazyfs_version", "");
  s.source = j.value("source", "");
  s.manifest_digest = j.value("manifest_digest", "");
  const Json& image = j.at("image");
  s.image.file = image.value("file", "");
  s.image.uuid = image.value("uuid", "");
  s.image.label = image.value("label", "");
  s.image.read_only_layout = image.value("read_only_layout", false);
  s.image.inodes = image.value("inodes", uint64_t{0});
  s.image.content_bytes = image.value("content_bytes", uint64_t{0});
}

}  // namespace

std::string AdditionsJson(const std::vector<Sidecar::File>& files) {
  return FilesJson(files).dump();
}

Status WriteSidecar(const std::string& path, const Sidecar& sidecar) {
  return WriteFileAtomic(path, ToJson(sidecar).dump(2) + "\n").WithContext("while writing " + path);
}

Result<Sidecar> ReadSidecar(const std::string& path) {
  LAZYFS_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgumentError(path + " is not a lazyfs sidecar (not a JSON object)");
  }
  Sidecar s;
  LAZYFS_ASSIGN_OR_RETURN(s.image.size, Field<uint64_t>(j, "image", "size", path));
  try {
    ReadInfo(j, s);
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError(path + ": " + e.what());
  }
  LAZYFS_RETURN_IF_ERROR(ReadVerity(j, path, s));
  LAZYFS_RETURN_IF_ERROR(ReadAdditions(j, path, s));
  return s;
}

}  // namespace lazyfs::convert
