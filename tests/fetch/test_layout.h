// Tiny OCI layouts for fetch tests, written byte by byte (JSON text and opaque "layer" blobs):
// fetch/ never looks inside layers, so a layer here is any bytes with a tar media type.
#pragma once

#include <stdlib.h>

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "base/fd.h"

namespace lazyfs::fetch::testing {

// A temporary directory removed on destruction.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/lazyfs-fetch-test-XXXXXX";
    if (::mkdtemp(templ.data())) path_ = templ;
    EXPECT_FALSE(path_.empty()) << "mkdtemp failed";
  }
  ~TempDir() {
    if (!path_.empty()) RemoveTree(path_).IgnoreError();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Blob {
  std::string media_type;
  Digest digest;
  uint64_t size = 0;
  std::string bytes;

  // The descriptor JSON; `extra` is appended inside the object (",\"platform\":{...}").
  std::string Json(const std::string& extra = "") const {
    return "{\"mediaType\":\"" + media_type + "\",\"digest\":\"" + digest.ToString() +
           "\",\"size\":" + std::to_string(size) + extra + "}";
  }
};

inline constexpr char kOciManifestType[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kOciIndexType[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kOciConfigType[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kTarType[] = "application/vnd.oci.image.layer.v1.tar";

inline std::string PlatformJson(const std::string& os, const std::string& arch,
                                const std::string& variant = "") {
  std::string out = ",\"platform\":{\"os\":\"" + os + "\",\"architecture\":\"" + arch + "\"";
  if (!variant.empty()) out += ",\"variant\":\"" + variant + "\"";
  return out + "}";
}

inline std::string RefName(const std::string& name) {
  return ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"" + name + "\"}";
}

// Writes an OCI layout under `dir`: blobs first, then index.json naming the top manifests.
class LayoutWriter {
 public:
  explicit LayoutWriter(std::string dir) : dir_(std::move(dir)) {
    EXPECT_TRUE(MakeDirs(dir_ + "/blobs/sha256").ok());
    EXPECT_TRUE(WriteFileAtomic(dir_ + "/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}").ok());
  }
  const std::string& dir() const { return dir_; }
  std::string BlobPath(const Digest& d) const { return dir_ + "/blobs/sha256/" + d.Hex(); }

  Blob AddBlob(std::string bytes, std::string media_type) {
    Blob b;
    b.media_type = std::move(media_type);
    b.digest = Sha256Of(bytes);
    b.size = bytes.size();
    b.bytes = std::move(bytes);
    EXPECT_TRUE(WriteFileAtomic(BlobPath(b.digest), b.bytes).ok());
    return b;
  }

  // An image whose layers are the given byte strings (uncompressed "tar" media type, so each
  // diff_id equals the layer digest). Returns the manifest blob; the config is config_out.
  Blob AddImage(const std::vector<std::string>& layers, const std::string& arch = "amd64",
                const std::string& variant = "", Blob* config_out = nullptr,
                const std::string& manifest_type = kOciManifestType) {
    std::vector<Blob> layer_blobs;
    std::string diff_ids;
    for (const std::string& l : layers) {
      layer_blobs.push_back(AddBlob(l, kTarType));
      diff_ids += (diff_ids.empty() ? "\"" : ",\"") + layer_blobs.back().digest.ToString() + "\"";
    }
    std::string config = "{\"architecture\":\"" + arch + "\",\"os\":\"linux\"";
    if (!variant.empty()) config += ",\"variant\":\"" + variant + "\"";
    config += ",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[" + diff_ids + "]}}";
    Blob config_blob = AddBlob(config, kOciConfigType);
    if (config_out) *config_out = config_blob;
    std::string manifest = "{\"schemaVersion\":2,\"mediaType\":\"" + manifest_type +
                           "\",\"config\":" + config_blob.Json() + ",\"layers\":[";
    for (size_t i = 0; i < layer_blobs.size(); ++i) {
      manifest += (i ? "," : "") +
                  layer_blobs[i].Json(",\"annotations\":{\"test.layer\":\"" +
                                      std::to_string(i) + "\"}");
    }
    manifest += "]}";
    return AddBlob(manifest, manifest_type);
  }

  // An image index over (manifest, descriptor extras such as PlatformJson(...)).
  Blob AddIndex(const std::vector<std::pair<Blob, std::string>>& entries) {
    std::string index = "{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kOciIndexType) +
                        "\",\"manifests\":[";
    for (size_t i = 0; i < entries.size(); ++i) {
      index += (i ? "," : "") + entries[i].first.Json(entries[i].second);
    }
    return AddBlob(index + "]}", kOciIndexType);
  }

  // index.json over (blob, extras such as RefName("tag")).
  void WriteIndex(const std::vector<std::pair<Blob, std::string>>& entries) {
    std::string index = "{\"schemaVersion\":2,\"manifests\":[";
    for (size_t i = 0; i < entries.size(); ++i) {
      index += (i ? "," : "") + entries[i].first.Json(entries[i].second);
    }
    EXPECT_TRUE(WriteFileAtomic(dir_ + "/index.json", index + "]}").ok());
  }

 private:
  std::string dir_;
};

}  // namespace lazyfs::fetch::testing
