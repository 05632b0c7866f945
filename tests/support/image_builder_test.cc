#include "tests/support/image_builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "base/fd.h"

namespace lazyfs::testing {
namespace {

using Json = nlohmann::json;

// ----- Reading tars back with libarchive ------------------------------------------------------

struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

struct TarEntry {
  std::string name;
  mode_t filetype = 0;
  uint32_t perm = 0;
  int64_t uid = 0, gid = 0;
  int64_t size = 0;
  int64_t mtime = 0;
  std::string data;
  std::string symlink;
  std::string hardlink;
  uint32_t rdev_major = 0, rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
};

std::vector<TarEntry> ReadTar(const std::string& tar) {
  std::vector<TarEntry> out;
  std::unique_ptr<archive, ArchiveReadFree> a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  EXPECT_EQ(archive_read_open_memory(a.get(), tar.data(), tar.size()), ARCHIVE_OK);
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    TarEntry t;
    t.name = archive_entry_pathname(e);
    t.filetype = archive_entry_filetype(e);
    t.perm = archive_entry_perm(e);
    t.uid = archive_entry_uid(e);
    t.gid = archive_entry_gid(e);
    t.size = archive_entry_size(e);
    t.mtime = archive_entry_mtime(e);
    if (const char* s = archive_entry_symlink(e)) t.symlink = s;
    if (const char* h = archive_entry_hardlink(e)) t.hardlink = h;
    t.rdev_major = archive_entry_rdevmajor(e);
    t.rdev_minor = archive_entry_rdevminor(e);
    archive_entry_xattr_reset(e);
    const char* xn;
    const void* xv;
    size_t xs;
    while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK) {
      t.xattrs[xn] = std::string(static_cast<const char*>(xv), xs);
    }
    char buf[4096];
    la_ssize_t n;
    while ((n = archive_read_data(a.get(), buf, sizeof(buf))) > 0) t.data.append(buf, n);
    EXPECT_GE(n, 0) << archive_error_string(a.get());
    out.push_back(std::move(t));
  }
  EXPECT_EQ(rc, ARCHIVE_EOF) << archive_error_string(a.get());
  return out;
}

std::string Tar(const std::vector<Entry>& entries, TarFormat format = TarFormat::kPax) {
  auto tar = BuildLayerTar(entries, format);
  EXPECT_TRUE(tar.ok()) << tar.status().ToString();
  return tar.ok() ? *tar : std::string();
}

TEST(BuildLayerTarTest, PaxRoundTripsEveryField) {
  const std::string long_name = "d/" + std::string(253, 'n');  // 255 bytes
  ASSERT_EQ(long_name.size(), 255u);
  Entry xf = File("etc/motd", "hello\n", 0640, 1000, 1000);
  xf.xattrs = {{"user.origin", "layer 2"}, {"security.capability", std::string("\x01\x00\x02", 3)}};
  xf.mtime = 1234567890;
  std::string tar = Tar({
      Dir("etc", 0750, 0, 42),
      xf,
      File("usr/bin/su", "suid", 04755),
      File("usr/bin/wall", "sgid", 02755, 0, 5),
      Dir("tmp", 01777),
      File("home/nobody/x", "", 0, 65534, 65534),
      Symlink("bin/sh", "busybox"),
      Hardlink("usr/bin/su2", "usr/bin/su"),
      CharDev("dev/null", 1, 3, 0666),
      BlockDev("dev/sda", 8, 0, 0660),
      Fifo("run/fifo"),
      File(long_name, "long"),
  });
  std::vector<TarEntry> got = ReadTar(tar);
  ASSERT_EQ(got.size(), 12u);

  EXPECT_EQ(got[0].name, "etc/");
  EXPECT_EQ(got[0].filetype, AE_IFDIR);
  EXPECT_EQ(got[0].perm, 0750u);
  EXPECT_EQ(got[0].gid, 42);

  EXPECT_EQ(got[1].name, "etc/motd");
  EXPECT_EQ(got[1].filetype, AE_IFREG);
  EXPECT_EQ(got[1].perm, 0640u);
  EXPECT_EQ(got[1].uid, 1000);
  EXPECT_EQ(got[1].gid, 1000);
  EXPECT_EQ(got[1].data, "hello\n");
  EXPECT_EQ(got[1].mtime, 1234567890);
  EXPECT_EQ(got[1].xattrs, xf.xattrs);
  // Docker's spelling only, not libarchive's private one.
  EXPECT_NE(tar.find("SCHILY.xattr.user.origin=layer 2"), std::string::npos);
  EXPECT_EQ(tar.find("LIBARCHIVE.xattr"), std::string::npos);

  EXPECT_EQ(got[2].perm, 04755u);
  EXPECT_EQ(got[2].data, "suid");
  EXPECT_EQ(got[2].mtime, kDefaultMtime);
  EXPECT_EQ(got[3].perm, 02755u);
  EXPECT_EQ(got[3].gid, 5);
  EXPECT_EQ(got[4].name, "tmp/");
  EXPECT_EQ(got[4].perm, 01777u);
  EXPECT_EQ(got[5].uid, 65534);
  EXPECT_EQ(got[5].gid, 65534);
  EXPECT_EQ(got[5].perm, 0644u);

  EXPECT_EQ(got[6].filetype, AE_IFLNK);
  EXPECT_EQ(got[6].symlink, "busybox");
  EXPECT_EQ(got[6].perm, 0777u);

  EXPECT_EQ(got[7].name, "usr/bin/su2");
  EXPECT_EQ(got[7].hardlink, "usr/bin/su");
  EXPECT_EQ(got[7].data, "");

  EXPECT_EQ(got[8].filetype, AE_IFCHR);
  EXPECT_EQ(got[8].rdev_major, 1u);
  EXPECT_EQ(got[8].rdev_minor, 3u);
  EXPECT_EQ(got[8].perm, 0666u);
  EXPECT_EQ(got[9].filetype, AE_IFBLK);
  EXPECT_EQ(got[9].rdev_major, 8u);
  EXPECT_EQ(got[9].rdev_minor, 0u);
  EXPECT_EQ(got[10].filetype, AE_IFIFO);

  EXPECT_EQ(got[11].name, long_name);
  EXPECT_EQ(got[11].data, "long");

  // No record padding: the archive ends with its two zero blocks.
  EXPECT_EQ(tar.size() % 512, 0u);
  EXPECT_EQ(tar.substr(tar.size() - 1024), std::string(1024, '\0'));
}

TEST(BuildLayerTarTest, GnuLongNamesAndLinks) {
  const std::string name = std::string(150, 'a') + "/" + std::string(120, 'b');
  const std::string target = std::string(180, 't');
  std::string tar = Tar({File(name, "x", 0600, 1000, 1000), Symlink("s", target),
                         Hardlink("h", name), File("short", "y")},
                        TarFormat::kGnu);
  EXPECT_NE(tar.find("././@LongLink"), std::string::npos);
  std::vector<TarEntry> got = ReadTar(tar);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].name, name);
  EXPECT_EQ(got[0].uid, 1000);
  EXPECT_EQ(got[0].perm, 0600u);
  EXPECT_EQ(got[1].symlink, target);
  EXPECT_EQ(got[2].hardlink, name);
  EXPECT_EQ(got[3].name, "short");
  EXPECT_EQ(got[3].data, "y");
}

TEST(BuildLayerTarTest, UstarCannotCarryLongNamesOrXattrs) {
  std::string ok = Tar({File("a/b", "c", 04711, 65534, 65534)}, TarFormat::kUstar);
  std::vector<TarEntry> got = ReadTar(ok);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].perm, 04711u);
  EXPECT_EQ(got[0].uid, 65534);

  auto too_long = BuildLayerTar({File(std::string(300, 'x'), "")}, TarFormat::kUstar);
  EXPECT_EQ(too_long.status().code(), StatusCode::kInvalidArgument);
  Entry x = File("f", "");
  x.xattrs["user.a"] = "b";
  EXPECT_EQ(BuildLayerTar({x}, TarFormat::kUstar).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildLayerTar({x}, TarFormat::kGnu).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildLayerTar({Hardlink("h", "")}).status().code(), StatusCode::kInvalidArgument);
}

TEST(BuildLayerTarTest, WhiteoutOpaqueAndRawNames) {
  std::vector<TarEntry> got = ReadTar(Tar({
      Whiteout("etc/hostname"),
      Whiteout("top"),
      Opaque("opt/sub"),
      Opaque(""),
      Dir(""),
      Raw("../etc/passwd", EntryType::kFile, "evil"),
      Raw("/abs/file"),
      Raw("a//b/./c"),
      Raw("link", EntryType::kHardlink, "", "../../etc/shadow"),
      Raw("etc/.wh.keep", EntryType::kWhiteout, "data"),
  }));
  std::vector<std::string> names;
  for (const TarEntry& t : got) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"etc/.wh.hostname", ".wh.top", "opt/sub/.wh..wh..opq",
                                             ".wh..wh..opq", "./", "../etc/passwd", "/abs/file",
                                             "a//b/./c", "link", "etc/.wh.keep"}));
  EXPECT_EQ(got[0].filetype, AE_IFREG);
  EXPECT_EQ(got[0].size, 0);
  EXPECT_EQ(got[5].data, "evil");
  EXPECT_EQ(got[8].hardlink, "../../etc/shadow");
  EXPECT_EQ(got[9].data, "data");
}

// ----- Compression ----------------------------------------------------------------------------

TEST(CompressTest, RoundTrips) {
  std::string tar = Tar({File("a", std::string(200000, 'z')), File("b", "bee")});
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    auto blob = Compress(tar, c);
    ASSERT_TRUE(blob.ok()) << blob.status().ToString();
    auto back = Decompress(*blob, c);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, tar);
    if (c != Compression::kNone) {
      EXPECT_LT(blob->size(), tar.size() / 10);
    }
  }
  auto gz = Compress(tar, Compression::kGzip);
  EXPECT_EQ(gz->substr(0, 3), std::string("\x1f\x8b\x08", 3));
  auto zst = Compress(tar, Compression::kZstd);
  EXPECT_EQ(zst->substr(0, 4), std::string("\x28\xb5\x2f\xfd", 4));
  EXPECT_EQ(*Decompress(*Compress("", Compression::kGzip), Compression::kGzip), "");
}

TEST(CompressTest, MultiMemberAndCorruptInput) {
  std::string two =
      *Compress("hello ", Compression::kGzip) + *Compress("world", Compression::kGzip);
  EXPECT_EQ(*Decompress(two, Compression::kGzip), "hello world");
  std::string twoz =
      *Compress("hello ", Compression::kZstd) + *Compress("world", Compression::kZstd);
  EXPECT_EQ(*Decompress(twoz, Compression::kZstd), "hello world");

  std::string big(100000, 'q');
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    std::string blob = *Compress(big, c);
    EXPECT_EQ(Decompress(blob.substr(0, blob.size() / 2), c).status().code(),
              StatusCode::kDataLoss);
    EXPECT_EQ(Decompress("not compressed at all", c).status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(Decompress("", c).status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(Decompress(blob, c, 1000).status().code(), StatusCode::kResourceExhausted);
  }
}

// ----- OCI layouts ----------------------------------------------------------------------------

class LayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lazyfs-image-builder-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }

  Json ReadJson(const std::string& path) {
    auto text = ReadFileToString(path);
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    return text.ok() ? Json::parse(*text, nullptr, false) : Json();
  }
  std::string Blob(const std::string& digest) {
    EXPECT_TRUE(digest.starts_with("sha256:")) << digest;
    auto bytes = ReadFileToString(dir_ + "/layout/blobs/sha256/" + digest.substr(7));
    EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
    if (!bytes.ok()) return "";
    EXPECT_EQ(Sha256Of(*bytes).ToString(), digest) << "blob content does not match its name";
    return *bytes;
  }
  std::string layout() const { return dir_ + "/layout"; }

  std::string dir_;
};

ImageSpec TwoLayerSpec() {
  ImageSpec spec;
  spec.layers.push_back(Layer{.entries = {Dir("etc"), File("etc/hostname", "one\n")},
                              .compression = Compression::kGzip});
  spec.layers.push_back(Layer{.entries = {Whiteout("etc/hostname"), File("etc/motd", "hi\n")},
                              .compression = Compression::kZstd});
  spec.layers.push_back(Layer{.entries = {File("plain", "p")}, .compression = Compression::kNone});
  spec.config_labels["org.example"] = "yes";
  return spec;
}

TEST_F(LayoutTest, BlobsConfigAndTag) {
  ImageSpec spec = TwoLayerSpec();
  auto digest = WriteOciLayout(spec, layout(), "v1");
  ASSERT_TRUE(digest.ok()) << digest.status().ToString();

  EXPECT_EQ(ReadJson(layout() + "/oci-layout"), Json({{"imageLayoutVersion", "1.0.0"}}));
  Json index = ReadJson(layout() + "/index.json");
  EXPECT_EQ(index["schemaVersion"], 2);
  ASSERT_EQ(index["manifests"].size(), 1u);
  const Json& desc = index["manifests"][0];
  EXPECT_EQ(desc["digest"], digest->ToString());
  EXPECT_EQ(desc["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(desc["annotations"]["org.opencontainers.image.ref.name"], "v1");

  std::string manifest_bytes = Blob(desc["digest"]);
  EXPECT_EQ(desc["size"], manifest_bytes.size());
  Json manifest = Json::parse(manifest_bytes);
  EXPECT_EQ(manifest["schemaVersion"], 2);
  EXPECT_EQ(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
  std::string config_bytes = Blob(manifest["config"]["digest"]);
  EXPECT_EQ(manifest["config"]["size"], config_bytes.size());
  Json config = Json::parse(config_bytes);
  EXPECT_EQ(config["os"], "linux");
  EXPECT_EQ(config["architecture"], HostArchitecture());
  EXPECT_NE(HostArchitecture(), "unknown");
  EXPECT_EQ(config["rootfs"]["type"], "layers");
  EXPECT_EQ(config["config"]["Labels"]["org.example"], "yes");
  EXPECT_EQ(config["history"].size(), 3u);

  const std::vector<std::pair<std::string, Compression>> kTypes = {
      {"application/vnd.oci.image.layer.v1.tar+gzip", Compression::kGzip},
      {"application/vnd.oci.image.layer.v1.tar+zstd", Compression::kZstd},
      {"application/vnd.oci.image.layer.v1.tar", Compression::kNone}};
  ASSERT_EQ(manifest["layers"].size(), 3u);
  ASSERT_EQ(config["rootfs"]["diff_ids"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const Json& l = manifest["layers"][i];
    EXPECT_EQ(l["mediaType"], kTypes[i].first);
    std::string blob = Blob(l["digest"]);
    EXPECT_EQ(l["size"], blob.size());
    auto tar = Decompress(blob, kTypes[i].second);
    ASSERT_TRUE(tar.ok()) << tar.status().ToString();
    EXPECT_EQ(config["rootfs"]["diff_ids"][i], Sha256Of(*tar).ToString());
    EXPECT_EQ(*tar, Tar(spec.layers[i].entries));
  }

  // Deterministic: the same spec gives the same manifest digest.
  auto again = BuildImage(spec);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->manifest_digest, *digest);
}

TEST_F(LayoutTest, SecondTagKeepsFirstAndRetagReplaces) {
  ImageSpec a = TwoLayerSpec();
  ImageSpec b = TwoLayerSpec();
  b.layers[0].entries.push_back(File("extra", "e"));
  auto da = WriteOciLayout(a, layout(), "a");
  auto db = WriteOciLayout(b, layout(), "b");
  ASSERT_TRUE(da.ok() && db.ok());
  EXPECT_NE(*da, *db);
  auto tags = [&] {
    std::map<std::string, std::string> m;
    Json index = ReadJson(layout() + "/index.json");
    for (const Json& d : index["manifests"]) {
      m[d["annotations"]["org.opencontainers.image.ref.name"]] = d["digest"];
    }
    return m;
  };
  EXPECT_EQ(tags(),
            (std::map<std::string, std::string>{{"a", da->ToString()}, {"b", db->ToString()}}));
  ASSERT_TRUE(WriteOciLayout(b, layout(), "a").ok());
  EXPECT_EQ(ReadJson(layout() + "/index.json")["manifests"].size(), 2u);
  EXPECT_EQ(tags(),
            (std::map<std::string, std::string>{{"a", db->ToString()}, {"b", db->ToString()}}));
}

TEST_F(LayoutTest, RawBlobAndOverrides) {
  ImageSpec spec;
  Layer raw;
  raw.raw_blob = std::string("this is not a tar");
  raw.compression = Compression::kGzip;  // does not decompress: diff_id = sha256 of the bytes
  raw.raw_media_type = "application/vnd.example.weird";
  raw.annotations["org.example.note"] = "hostile";
  spec.layers.push_back(raw);
  Layer overridden{.entries = {File("a", "b")}};
  overridden.diff_id = Sha256Of("claimed");
  spec.layers.push_back(overridden);
  auto img = BuildImage(spec);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->layers[0].blob, "this is not a tar");
  EXPECT_EQ(img->layers[0].diff_id, Sha256Of("this is not a tar"));
  EXPECT_EQ(img->layers[1].diff_id, Sha256Of("claimed"));
  Json manifest = Json::parse(img->manifest);
  EXPECT_EQ(manifest["layers"][0]["mediaType"], "application/vnd.example.weird");
  EXPECT_EQ(manifest["layers"][0]["annotations"]["org.example.note"], "hostile");
  Json config = Json::parse(img->config);
  EXPECT_EQ(config["rootfs"]["diff_ids"][1], Sha256Of("claimed").ToString());
  EXPECT_EQ(ExpectedListing(spec).status().code(), StatusCode::kUnimplemented);
}

TEST_F(LayoutTest, MultiPlatformIndex) {
  ImageSpec spec = TwoLayerSpec();
  auto digest =
      WriteOciLayoutIndex({{spec, "linux/amd64"}, {spec, "linux/arm64/v8"}}, layout(), "multi");
  ASSERT_TRUE(digest.ok()) << digest.status().ToString();
  Json index = ReadJson(layout() + "/index.json");
  ASSERT_EQ(index["manifests"].size(), 1u);
  EXPECT_EQ(index["manifests"][0]["mediaType"], "application/vnd.oci.image.index.v1+json");
  EXPECT_EQ(index["manifests"][0]["digest"], digest->ToString());
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "multi");
  Json image_index = Json::parse(Blob(digest->ToString()));
  EXPECT_EQ(image_index["mediaType"], "application/vnd.oci.image.index.v1+json");
  ASSERT_EQ(image_index["manifests"].size(), 2u);
  EXPECT_EQ(image_index["manifests"][0]["platform"],
            Json({{"os", "linux"}, {"architecture", "amd64"}}));
  EXPECT_EQ(image_index["manifests"][1]["platform"],
            Json({{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}}));
  for (size_t i = 0; i < 2; ++i) {
    Json manifest = Json::parse(Blob(image_index["manifests"][i]["digest"]));
    Json config = Json::parse(Blob(manifest["config"]["digest"]));
    EXPECT_EQ(config["architecture"], i == 0 ? "amd64" : "arm64");
    for (const Json& l : manifest["layers"]) Blob(l["digest"]);
  }
  EXPECT_EQ(WriteOciLayoutIndex({{spec, "linux"}}, layout(), "x").status().code(),
            StatusCode::kInvalidArgument);
}

// ----- The oracle -----------------------------------------------------------------------------

ListingEntry D(uint32_t mode, uint32_t nlink, int64_t mtime = kDefaultMtime, uint32_t uid = 0,
               uint32_t gid = 0) {
  ListingEntry e;
  e.type = 'd';
  e.mode = mode;
  e.nlink = nlink;
  e.mtime_sec = mtime;
  e.uid = uid;
  e.gid = gid;
  return e;
}
ListingEntry F(const std::string& data, uint32_t mode = 0644, uint32_t nlink = 1, uint32_t uid = 0,
               uint32_t gid = 0) {
  ListingEntry e;
  e.type = 'f';
  e.mode = mode;
  e.size = data.size();
  e.sha256 = Sha256Of(data).Hex();
  e.nlink = nlink;
  e.uid = uid;
  e.gid = gid;
  e.mtime_sec = kDefaultMtime;
  return e;
}
ListingEntry L(const std::string& target) {
  ListingEntry e;
  e.type = 'l';
  e.mode = 0777;
  e.size = target.size();
  e.sha256 = Sha256Of(target).Hex();
  e.target = target;
  e.nlink = 1;
  e.mtime_sec = kDefaultMtime;
  return e;
}
ListingEntry Implicit(uint32_t nlink) { return D(0755, nlink, 0); }

TEST(ExpectedListingTest, ThreeLayers) {
  ImageSpec spec;
  spec.layers.push_back(Layer{.entries =
                                  {
                                      Dir("etc"),
                                      File("etc/passwd", "root\n"),
                                      File("etc/hostname", "one\n"),
                                      Dir("opt"),
                                      File("opt/a", "a"),
                                      Dir("opt/sub"),
                                      File("opt/sub/b", "b"),
                                      Dir("var"),
                                      Dir("var/lib"),
                                      File("var/lib/data", "d"),
                                      File("usr/bin/tool", "tool-bytes", 04755),
                                      File("home/user/f", "f", 0600, 1000, 1000),
                                      File("srv", "a file, for now"),
                                      Symlink("link1", "link2"),
                                  },
                              .compression = Compression::kGzip});
  spec.layers.push_back(Layer{.entries =
                                  {
                                      Whiteout("etc/hostname"),
                                      File("opt/new", "new"),  // before the marker: still kept
                                      Opaque("opt"),
                                      File("var/lib", "now a file", 0640, 65534, 65534),
                                      Hardlink("bin/tool2", "usr/bin/tool"),
                                      Symlink("link2", "link3"),
                                      Symlink("link3", "etc/passwd"),
                                      CharDev("dev/null", 1, 3, 0666),
                                  },
                              .compression = Compression::kZstd,
                              .format = TarFormat::kGnu});
  Entry etc = Dir("etc", 0750);
  etc.xattrs["user.x"] = "y";
  spec.layers.push_back(Layer{.entries =
                                  {
                                      etc,
                                      Dir("srv"),
                                      File("srv/x", "x"),
                                      Hardlink("usr/bin/tool3", "bin/tool2"),
                                      Whiteout("home/user/f"),
                                      Fifo("run/fifo"),
                                  },
                              .compression = Compression::kNone});
  auto got = ExpectedListing(spec);
  ASSERT_TRUE(got.ok()) << got.status().ToString();

  ListingEntry etc_entry = D(0750, 2);
  etc_entry.xattrs["user.x"] = "y";
  ListingEntry null_dev;
  null_dev.type = 'c';
  null_dev.mode = 0666;
  null_dev.rdev_major = 1;
  null_dev.rdev_minor = 3;
  null_dev.nlink = 1;
  null_dev.mtime_sec = kDefaultMtime;
  ListingEntry fifo;
  fifo.type = 'p';
  fifo.mode = 0644;
  fifo.nlink = 1;
  fifo.mtime_sec = kDefaultMtime;

  Listing want = {
      {"/", Implicit(2 + 9)},  // bin dev etc home opt run srv usr var
      {"/bin", Implicit(2)},
      {"/bin/tool2", F("tool-bytes", 04755, 3)},
      {"/dev", Implicit(2)},
      {"/dev/null", null_dev},
      {"/etc", etc_entry},
      {"/etc/passwd", F("root\n")},
      {"/home", Implicit(3)},
      {"/home/user", Implicit(2)},
      {"/link1", L("link2")},
      {"/link2", L("link3")},
      {"/link3", L("etc/passwd")},
      {"/opt", D(0755, 2)},
      {"/opt/new", F("new")},
      {"/run", Implicit(2)},
      {"/run/fifo", fifo},
      {"/srv", D(0755, 2)},
      {"/srv/x", F("x")},
      {"/usr", Implicit(3)},
      {"/usr/bin", Implicit(2)},
      {"/usr/bin/tool", F("tool-bytes", 04755, 3)},
      {"/usr/bin/tool3", F("tool-bytes", 04755, 3)},
      {"/var", D(0755, 2)},
      {"/var/lib", F("now a file", 0640, 1, 65534, 65534)},
  };
  EXPECT_EQ(DiffListings(want, *got), "");
  EXPECT_EQ(*got, want);
}

TEST(ExpectedListingTest, RootEntryReplacementAndNameForms) {
  ImageSpec spec;
  Entry root = Dir("", 0700, 5, 6);
  root.mtime = 42;
  spec.layers.push_back(Layer{.entries = {Raw("./a/", EntryType::kDir), File("./a/f", "1"),
                                          Dir("d"), File("d/x", "x"), Hardlink("d/y", "d/x")}});
  spec.layers.push_back(Layer{.entries = {root, File("d", "replaces dir and its hardlinks"),
                                          File("a/f", "2", 0600), Dir("a", 0711)}});
  auto got = ExpectedListing(spec);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ListingEntry r = D(0700, 3, 42, 5, 6);
  Listing want = {{"/", r},
                  {"/a", D(0711, 2)},
                  {"/a/f", F("2", 0600)},
                  {"/d", F("replaces dir and its hardlinks")}};
  EXPECT_EQ(DiffListings(want, *got), "");
}

TEST(ExpectedListingTest, HardlinkCountsFollowReplacementAndWhiteouts) {
  ImageSpec spec;
  spec.layers.push_back(Layer{
      .entries = {File("a", "A"), Hardlink("b", "a"), Hardlink("c", "b"), Hardlink("d", "a")}});
  spec.layers.push_back(Layer{.entries = {Whiteout("b"), File("c", "C")}});
  auto got = ExpectedListing(spec);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  Listing want = {
      {"/", Implicit(2)}, {"/a", F("A", 0644, 2)}, {"/c", F("C")}, {"/d", F("A", 0644, 2)}};
  EXPECT_EQ(DiffListings(want, *got), "");
}

TEST(ExpectedListingTest, RejectsWhatTheProductMustReject) {
  const std::vector<std::pair<Entry, std::string>> kCases = {
      {Raw("../etc/passwd"), "non-canonical"},
      {Raw("a//b"), "non-canonical"},
      {Raw("a/./b"), "non-canonical"},
      {Hardlink("h", "missing"), "does not exist"},
      {Hardlink("h", "dir"), "is a directory"},
      {Raw("link", EntryType::kHardlink, "", "../x"), "non-canonical"},
      {File("dirfile/child", "x"), "below a non-directory of its layer"},
  };
  for (const auto& [entry, message] : kCases) {
    ImageSpec spec;
    spec.layers.push_back(Layer{.entries = {Dir("dir"), File("dirfile", "f"), entry}});
    auto got = ExpectedListing(spec);
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument) << entry.path;
    EXPECT_NE(got.status().message().find(message), std::string::npos) << got.status().ToString();
  }
}

TEST(ExpectedListingTest, AbsoluteNamesAreRelativeToTheRoot) {
  ImageSpec spec;
  spec.layers.push_back(
      Layer{.entries = {Raw("/abs/f", EntryType::kFile, "A"), Raw("/l", EntryType::kHardlink, "", "/abs/f")}});
  auto got = ExpectedListing(spec);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->count("/abs/f"), 1u);
  EXPECT_EQ(got->count("/l"), 1u);
}

// ----- JSON specs and lazyfs-fixture ----------------------------------------------------------

TEST_F(LayoutTest, ParsesJsonSpec) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/content.bin", "from the host").ok());
  const std::string json = R"({
    "architecture": "arm64",
    "labels": {"k": "v"},
    "layers": [
      {"compression": "zstd", "format": "gnu", "entries": [
        {"type": "dir", "path": "home/user", "mode": "0750", "uid": 1000, "gid": 1000},
        {"type": "file", "path": "bin/tool", "from": "content.bin", "mode": "04755"},
        {"type": "chardev", "path": "dev/null", "major": 1, "minor": 3, "mode": "0666"},
        {"type": "hardlink", "path": "bin/again", "target": "bin/tool"},
        {"type": "file", "path": "x", "data": "d", "mtime": 5}
      ]},
      {"entries": [
        {"type": "whiteout", "path": "x"},
        {"type": "file", "path": "m", "data": "", "xattrs": {"user.a": "b"}},
        {"type": "file", "path": "../evil", "raw": true}
      ]}
    ]})";
  auto spec = ParseImageSpecJson(json, dir_);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->architecture, "arm64");
  EXPECT_EQ(spec->config_labels.at("k"), "v");
  ASSERT_EQ(spec->layers.size(), 2u);
  EXPECT_EQ(spec->layers[0].compression, Compression::kZstd);
  EXPECT_EQ(spec->layers[0].format, TarFormat::kGnu);
  EXPECT_EQ(spec->layers[1].compression, Compression::kGzip);
  const auto& e = spec->layers[0].entries;
  EXPECT_EQ(e[0].mode, 0750u);
  EXPECT_EQ(e[0].uid, 1000u);
  EXPECT_EQ(e[1].data, "from the host");
  EXPECT_EQ(e[1].mode, 04755u);
  EXPECT_EQ(e[2].type, EntryType::kCharDev);
  EXPECT_EQ(e[2].major, 1u);
  EXPECT_EQ(e[3].target, "bin/tool");
  EXPECT_EQ(e[4].mtime, 5);
  EXPECT_EQ(spec->layers[1].entries[0].type, EntryType::kWhiteout);
  EXPECT_EQ(spec->layers[1].entries[1].xattrs.at("user.a"), "b");
  EXPECT_TRUE(spec->layers[1].entries[2].raw_name);

  const std::vector<std::pair<std::string, std::string>> kBad = {
      {"[]", "must be a JSON object"},
      {"{", "invalid JSON"},
      {R"({"layers": []})", "non-empty"},
      {R"({"layers": [{"entries": [{"type": "sock", "path": "s"}]}]})",
       "layers[0].entries[0]: unknown type \"sock\""},
      {R"({"layers": [{"entries": [{"type": "file", "path": "f", "mode": "0999"}]}]})",
       "not an octal mode"},
      {R"({"layers": [{"entries": [{"type": "file", "path": "f", "colour": "red"}]}]})",
       "unknown key \"colour\""},
      {R"({"layers": [{"compression": "lz4", "entries": []}]})", "unknown compression"},
      {R"({"layers": [{"entries": [{"type": "symlink", "path": "s"}]}]})", "needs a \"target\""},
      {R"({"layers": [{"entries": [{"type": "file", "path": "f", "from": "/nonexistent/x"}]}]})",
       "\"from\""},
      {R"({"layers": [{"entries": [{"type": "file", "path": "f", "uid": -1}]}]})", "non-negative"},
  };
  for (const auto& [text, message] : kBad) {
    auto bad = ParseImageSpecJson(text, dir_);
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(bad.status().message().find(message), std::string::npos)
        << text << " -> " << bad.status().ToString();
  }
}

// lazyfs-fixture is built next to this test binary.
int RunFixture(const std::string& args, std::string* out) {
  char self[4096];
  ssize_t n_self = readlink("/proc/self/exe", self, sizeof(self) - 1);
  EXPECT_GT(n_self, 0);
  if (n_self <= 0) return -1;
  std::string dir(self, static_cast<size_t>(n_self));
  dir.resize(dir.rfind('/'));
  std::string cmd = dir + "/lazyfs-fixture " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(LayoutTest, FixtureTool) {
  const std::string spec_path = dir_ + "/spec.json";
  ASSERT_TRUE(WriteFileAtomic(spec_path, R"({"layers": [{"entries": [
      {"type": "file", "path": "etc/motd", "data": "hi\n"}]}]})")
                  .ok());
  std::string out;
  ASSERT_EQ(RunFixture(spec_path + " " + layout() + " t1", &out), 0) << out;
  auto parsed = ParseImageSpecJson(R"({"layers": [{"entries": [
      {"type": "file", "path": "etc/motd", "data": "hi\n"}]}]})",
                                   dir_);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(out, BuildImage(*parsed)->manifest_digest.ToString() + "\n");
  Json index = ReadJson(layout() + "/index.json");
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "t1");

  out.clear();
  EXPECT_EQ(RunFixture(spec_path, &out), 2);
  EXPECT_NE(out.find("usage"), std::string::npos) << out;

  ASSERT_TRUE(WriteFileAtomic(spec_path, R"({"layers": [{"entries": [{"type": "x"}]}]})").ok());
  out.clear();
  EXPECT_EQ(RunFixture(spec_path + " " + layout() + " t2", &out), 1);
  EXPECT_NE(out.find("missing \"path\""), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST(TourSpecTest, BusyboxSpecBuildsAndHasTheExpectedShape) {
  // ctest sets LAZYFS_SOURCE_DIR; run by hand, this file's own path gives the source tree.
  std::string src = getenv("LAZYFS_SOURCE_DIR") ? getenv("LAZYFS_SOURCE_DIR") : "";
  if (src.empty()) {
    src = __FILE__;
    src.resize(src.size() - std::string_view("/tests/support/image_builder_test.cc").size());
  }
  struct stat st;
  ASSERT_EQ(stat("/bin/busybox", &st), 0) << "the tour spec needs Debian's busybox-static";
  std::string path = src + "/packaging/tour/busybox.json";
  auto text = ReadFileToString(path);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  auto spec = ParseImageSpecJson(*text, src + "/packaging/tour");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto listing = ExpectedListing(*spec);
  ASSERT_TRUE(listing.ok()) << listing.status().ToString();
  const Listing& l = *listing;
  EXPECT_FALSE(l.contains("/etc/hostname"));
  EXPECT_EQ(l.at("/etc/motd").xattrs.at("user.origin"), "layer 2");
  EXPECT_EQ(l.at("/bin/busybox").nlink, 2u);
  EXPECT_EQ(l.at("/usr/bin/busybox-again").sha256, l.at("/bin/busybox").sha256);
  EXPECT_EQ(l.at("/usr/bin/passwd-helper").mode, 04755u);
  EXPECT_EQ(l.at("/tmp").mode, 01777u);
  EXPECT_EQ(l.at("/home/user").uid, 1000u);
  EXPECT_EQ(l.at("/home").mtime_sec, 0);
  EXPECT_EQ(l.at("/dev/null").type, 'c');
  EXPECT_EQ(l.at("/run/initctl").type, 'p');
  EXPECT_EQ(l.at("/etc/shadow").gid, 42u);
}

}  // namespace
}  // namespace lazyfs::testing

namespace lazyfs::testing {
namespace {

// Cross-checks the oracle against a real filesystem: GNU tar extracts a single layer (as root,
// keeping owners and modes) and ListDirectory must agree with ExpectedListing on every entry
// but the root (whose metadata comes from mkdtemp).
TEST_F(LayoutTest, OracleAgreesWithGnuTarExtraction) {
  ASSERT_EQ(geteuid(), 0u) << "extracting with owners needs root";
  std::vector<Entry> entries = {
      Dir("etc", 0750, 0, 42),
      File("etc/passwd", "root\n"),
      File("etc/shadow", "secret", 0640, 0, 42),
      Dir("home"),
      Dir("home/user", 0700, 1000, 1000),
      File("home/user/f", "mine", 0600, 1000, 1000),
      Dir("tmp", 01777),
      Dir("usr"),
      Dir("usr/bin"),
      File("usr/bin/su", "suid", 04755),
      Hardlink("usr/bin/su-again", "usr/bin/su"),
      Hardlink("etc/su-third", "usr/bin/su"),
      Symlink("usr/bin/sh", "su"),
      Dir("dev"),
      CharDev("dev/null", 1, 3, 0666),
      BlockDev("dev/loop9", 7, 9, 0660),
      Fifo("dev/fifo", 0600),
      File("nobody", "n", 0444, 65534, 65534),
  };
  std::string tar = Tar(entries);
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/layer.tar", tar).ok());
  ASSERT_TRUE(MakeDirs(dir_ + "/root").ok());
  std::string cmd =
      "tar --numeric-owner --same-owner -xpf " + dir_ + "/layer.tar -C " + dir_ + "/root 2>&1";
  ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  auto real = ListDirectory(dir_ + "/root");
  ASSERT_TRUE(real.ok()) << real.status().ToString();
  ImageSpec spec;
  spec.layers.push_back(Layer{.entries = entries});
  auto want = ExpectedListing(spec);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  real->erase("/");
  want->erase("/");
  // GNU tar creates links after it has restored directory mtimes, which then move again: compare
  // directory mtimes out of it, everything else in full.
  EXPECT_EQ(DiffListings(*want, *real, DiffOptions{.compare_mtime = false}), "");
  for (const auto& [path, e] : *want) {
    if (e.type != 'd' && real->contains(path)) {
      EXPECT_EQ(real->at(path).mtime_sec, e.mtime_sec) << path;
    }
  }
}

}  // namespace
}  // namespace lazyfs::testing
