// Hostile images: each built by the fixture builder (or by hand where the builder refuses),
// given to both `lazyfs mount` and `lazyfs materialize`. Each must end in a one-line error that
// names what was wrong, or in a documented, safe interpretation that mount and materialize
// agree on — never a crash, a hang or a write outside the store and the output file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>

#include "base/digest.h"
#include "base/fd.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"

namespace lazyfs::testing {
namespace {

namespace fsys = std::filesystem;

// Where an escaping entry would land if anything wrote it relative to a host path.
constexpr const char* kEscapeName = "lazyfs-hostile-escape";

ImageSpec OneLayer(std::vector<Entry> entries, Compression c = Compression::kGzip) {
  ImageSpec spec;
  Layer l;
  l.entries = std::move(entries);
  l.compression = c;
  spec.layers = {l};
  return spec;
}

ImageSpec Layers(std::vector<std::vector<Entry>> layers) {
  ImageSpec spec;
  for (auto& entries : layers) {
    Layer l;
    l.entries = std::move(entries);
    spec.layers.push_back(l);
  }
  return spec;
}

// A one-layer image whose layer blob is `blob` (compressed as `c` says).
ImageSpec RawLayer(std::string blob, Compression c) {
  ImageSpec spec;
  Layer l;
  l.compression = c;
  l.raw_blob = std::move(blob);
  spec.layers = {l};
  return spec;
}

std::string TarOf(const std::vector<Entry>& entries) {
  auto tar = BuildLayerTar(entries);
  EXPECT_TRUE(tar.ok()) << tar.status().ToString();
  return tar.ok() ? *tar : std::string();
}

std::string Compressed(const std::string& tar, Compression c) {
  auto blob = Compress(tar, c);
  EXPECT_TRUE(blob.ok()) << blob.status().ToString();
  return blob.ok() ? *blob : std::string();
}

// A ustar header block for `name` declaring `size` bytes, with a valid checksum.
std::string UstarHeader(const std::string& name, uint64_t size) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(&h[100], 8, "%07o", 0644);
  std::snprintf(&h[108], 8, "%07o", 0);
  std::snprintf(&h[116], 8, "%07o", 0);
  // Sizes past 8 GiB use the base-256 form (high bit set), as GNU tar writes them.
  if (size < (uint64_t{1} << 33)) {
    std::snprintf(&h[124], 12, "%011llo", static_cast<unsigned long long>(size));
  } else {
    h[124] = static_cast<char>(0x80);
    for (int i = 0; i < 8; ++i) h[135 - i] = static_cast<char>((size >> (8 * i)) & 0xff);
  }
  std::snprintf(&h[136], 12, "%011o", 1700000000);
  h[156] = '0';
  std::memcpy(&h[257], "ustar\0" "00", 8);
  std::memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(&h[148], 8, "%06o", sum);
  h[155] = ' ';
  return h;
}

struct Case {
  std::string name;
  std::function<Status(const std::string& layout, const std::string& tag)> write;
  // Either a part of the expected one-line error...
  std::string error;
  // ...or, for a safe interpretation, a check of the mounted tree (and of the loop-mounted
  // materialized image, which must list the same).
  std::function<void(const std::string& root)> check;
  // Environment for the lazyfs commands ("K=V").
  std::vector<std::string> env{};
};

Case Bad(std::string name, ImageSpec spec, std::string error) {
  return {std::move(name),
          [spec](const std::string& layout, const std::string& tag) {
            return WriteOciLayout(spec, layout, tag).status();
          },
          std::move(error), nullptr};
}

Case Safe(std::string name, ImageSpec spec, std::function<void(const std::string&)> check) {
  return {std::move(name),
          [spec](const std::string& layout, const std::string& tag) {
            return WriteOciLayout(spec, layout, tag).status();
          },
          "", std::move(check)};
}

// Writes a blob into an OCI layout by hand and returns its descriptor JSON.
std::string PutBlob(const std::string& layout, const std::string& bytes,
                    const std::string& media_type) {
  const Digest d = Sha256Of(bytes);
  EXPECT_TRUE(MakeDirs(layout + "/blobs/sha256").ok());
  EXPECT_TRUE(WriteFileAtomic(layout + "/blobs/sha256/" + d.Hex(), bytes).ok());
  return R"({"mediaType":")" + media_type + R"(","digest":")" + d.ToString() +
         R"(","size":)" + std::to_string(bytes.size()) + "}";
}

Status WriteIndexJson(const std::string& layout, const std::string& descriptor,
                      const std::string& tag) {
  std::string d = descriptor;
  d.insert(d.size() - 1, R"(,"annotations":{"org.opencontainers.image.ref.name":")" + tag + "\"}");
  LAZYFS_RETURN_IF_ERROR(
      WriteFileAtomic(layout + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  return WriteFileAtomic(layout + "/index.json",
                         R"({"schemaVersion":2,"manifests":[)" + d + "]}");
}

std::string Lstat(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return "missing";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%o %u:%u %lu", st.st_mode, st.st_uid, st.st_gid,
                static_cast<unsigned long>(st.st_nlink));
  return buf;
}

std::string Read(const std::string& path) {
  auto s = ReadFileToString(path);
  return s.ok() ? *s : "<" + s.status().message() + ">";
}

std::vector<Case> Corpus() {
  const std::string escape = std::string("../../../../../../../../tmp/") + kEscapeName;
  std::vector<Case> c;
  // ---- names ----
  c.push_back(Bad("parent escape", OneLayer({File("ok", "x"), Raw(escape, EntryType::kFile, "x")}),
                  "escapes the root"));
  c.push_back(Bad("parent escape in the middle",
                  OneLayer({Raw("a/../../" + std::string(kEscapeName), EntryType::kFile, "x")}),
                  "escapes the root"));
  c.push_back(Safe("absolute names are relative to the image root",
                   OneLayer({Raw("/tmp/" + std::string(kEscapeName), EntryType::kFile, "abs"),
                             Raw("/etc/passwd", EntryType::kFile, "root:x:0:0\n"),
                             Raw("/hl", EntryType::kHardlink, "", "/etc/passwd")}),
                   [](const std::string& root) {
                     EXPECT_EQ(Read(root + "/tmp/" + kEscapeName), "abs");
                     EXPECT_EQ(Read(root + "/hl"), "root:x:0:0\n");
                     EXPECT_EQ(Lstat(root + "/hl"), "100644 0:0 2");
                     EXPECT_EQ(::access((std::string("/tmp/") + kEscapeName).c_str(), F_OK), -1);
                   }));
  c.push_back(Bad("absolute name that climbs", OneLayer({Raw("/../" + std::string(kEscapeName))}),
                  "escapes the root"));
  c.push_back(Bad("a member below a file of the same layer",
                  OneLayer({File("p", "a file"), File("p/child", "x")}),
                  "below a non-directory that the same layer put"));
  c.push_back(Bad("a device number Linux cannot represent (major)",
                  OneLayer({CharDev("dev/big", 4096, 1)}), "cannot be represented"));
  c.push_back(Bad("a device number Linux cannot represent (minor)",
                  OneLayer({BlockDev("dev/big", 8, 1u << 20)}), "cannot be represented"));
  c.push_back(Bad("empty name", OneLayer({Raw("", EntryType::kFile, "x")}), "empty"));
  // ---- sizes ----
  c.push_back(Bad("a sparse file past the 1 PiB cap",
                  OneLayer({SparseFile("var/huge", uint64_t{2} << 50, {{0, "x"}})}),
                  "over the cap of 1125899906842624 bytes (max_file_size)"));
  c.push_back(Bad("component over 255 bytes", OneLayer({File(std::string(256, 'n'), "x")}),
                  "longer than 255"));
  {
    std::string deep;
    while (deep.size() <= 4200) deep += std::string(200, 'd') + "/";
    c.push_back(Bad("path over 4096 bytes", OneLayer({File(deep + "f", "x")}), "4096"));
  }
  c.push_back(Bad("bare .wh.", OneLayer({Raw("etc/.wh.", EntryType::kFile)}), ".wh."));
  c.push_back(Bad("whiteout of ..", Layers({{File("a/f", "x")}, {Raw("a/.wh...")}}), ".."));
  c.push_back(Bad("whiteout above the layer", Layers({{File("f", "x")}, {Raw("../.wh.f")}}),
                  "escapes the root"));
  // ---- hardlinks ----
  c.push_back(Bad("hardlink to a missing entry",
                  OneLayer({Raw("h", EntryType::kHardlink, "", "missing")}), "missing"));
  c.push_back(Bad("hardlink to a later entry",
                  OneLayer({Raw("h", EntryType::kHardlink, "", "f"), File("f", "x")}), "\"f\""));
  c.push_back(Bad("hardlink to a directory",
                  OneLayer({Dir("d"), Raw("h", EntryType::kHardlink, "", "d")}), "directory"));
  c.push_back(Bad("hardlink outside the tree",
                  OneLayer({Raw("h", EntryType::kHardlink, "", "../../../etc/passwd")}),
                  "escapes the root"));
  // ---- sizes and streams ----
  {
    Entry big = File("x", "v");
    big.xattrs["user.big"] = std::string(100 * 1024, 'x');
    c.push_back(Bad("one xattr too large", OneLayer({big}), "xattrs larger than"));
    Entry many = File("y", "v");
    for (int i = 0; i < 2000; ++i) many.xattrs["user.k" + std::to_string(i)] = std::string(40, 'v');
    c.push_back(Bad("too many xattrs", OneLayer({many}), "xattrs larger than"));
  }
  {
    // A header declaring 1 MiB, followed by 10 bytes and the end of the stream.
    std::string tar = UstarHeader("short", 1 << 20) + "0123456789";
    c.push_back(Bad("declared size larger than the data",
                    RawLayer(Compressed(tar, Compression::kGzip), Compression::kGzip),
                    "layer sha256:"));
    std::string huge = UstarHeader("huge", uint64_t{1} << 50) + std::string(4096, 'z');
    c.push_back(Bad("huge declared size",
                    RawLayer(Compressed(huge, Compression::kZstd), Compression::kZstd),
                    "layer sha256:"));
  }
  {
    const std::string tar = TarOf({File("f", PseudoRandomBytes(200000, 3))});
    std::string gz = Compressed(tar, Compression::kGzip);
    c.push_back(Bad("truncated gzip", RawLayer(gz.substr(0, gz.size() / 2), Compression::kGzip),
                    "layer sha256:"));
    // Damage inside a zstd frame may still decompress (frames need not carry a checksum): the
    // config's diff_id, of the tar as built, is what catches it then.
    std::string zs = Compressed(tar, Compression::kZstd);
    for (size_t i = zs.size() / 3; i < zs.size() / 3 + 64; ++i) zs[i] ^= 0x5a;
    ImageSpec corrupt = RawLayer(zs, Compression::kZstd);
    corrupt.layers[0].diff_id = Sha256Of(tar);
    c.push_back(Bad("corrupt zstd", corrupt, "layer sha256:"));
    std::string notgz = "this is not a gzip stream at all";
    c.push_back(Bad("not gzip at all", RawLayer(notgz, Compression::kGzip), "layer sha256:"));
  }
  {
    // A million and one tiny entries, past the default per-layer cap. Built only when the
    // case runs: the corpus is listed for every case and at test discovery.
    Case many{"entries past the per-layer cap",
              [](const std::string& layout, const std::string& tag) {
                const int n = 1'000'001;
                std::vector<Entry> tiny;
                tiny.reserve(n);
                for (int i = 0; i < n; ++i) tiny.push_back(File("t/" + std::to_string(i), ""));
                return WriteOciLayout(OneLayer(std::move(tiny)), layout, tag).status();
              },
              "more than 1000000 entries", nullptr};
    c.push_back(std::move(many));
  }
  // A zstd bomb: 300 MiB of zeros in a few KiB, past 10000x the declared layer size and the
  // 256 MiB floor. Built only when this case runs.
  c.push_back({"zstd bomb past the expansion cap",
               [](const std::string& layout, const std::string& tag) {
                 return WriteOciLayout(
                            OneLayer({File("zeros", std::string(300u << 20, '\0'))},
                                     Compression::kZstd),
                            layout, tag)
                     .status();
               },
               "decompresses to more than", nullptr});
  // ---- manifests, configs, indexes ----
  c.push_back({"manifest of 100 MiB",
               [](const std::string& layout, const std::string& tag) {
                 std::string m = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":")";
                 m += std::string(100 << 20, 'p');
                 m += "\"}}";
                 return WriteIndexJson(
                     layout, PutBlob(layout, m, "application/vnd.oci.image.manifest.v1+json"), tag);
               },
               "manifest", nullptr});
  c.push_back({"config whose digest does not match",
               [](const std::string& layout, const std::string& tag) {
                 LAZYFS_RETURN_IF_ERROR(
                     WriteOciLayout(OneLayer({File("f", "x")}), layout, tag).status());
                 auto built = BuildImage(OneLayer({File("f", "x")}));
                 if (!built.ok()) return built.status();
                 std::string config = built->config;
                 config[config.size() / 2] ^= 1;  // same size, other bytes
                 return WriteFileAtomic(layout + "/blobs/sha256/" + built->config_digest.Hex(),
                                        config);
               },
               "digest", nullptr});
  c.push_back({"layer whose digest does not match",
               [](const std::string& layout, const std::string& tag) {
                 const ImageSpec spec = OneLayer({File("f", PseudoRandomBytes(5000, 4))});
                 LAZYFS_RETURN_IF_ERROR(WriteOciLayout(spec, layout, tag).status());
                 auto built = BuildImage(spec);
                 if (!built.ok()) return built.status();
                 std::string blob = built->layers[0].blob;
                 blob[blob.size() / 2] ^= 1;
                 return WriteFileAtomic(
                     layout + "/blobs/sha256/" + built->layers[0].digest.Hex(), blob);
               },
               "digest", nullptr});
  c.push_back({"image indexes nested 20 deep",
               [](const std::string& layout, const std::string& tag) {
                 auto built = BuildImage(OneLayer({File("f", "x")}));
                 if (!built.ok()) return built.status();
                 PutBlob(layout, built->config, "application/vnd.oci.image.config.v1+json");
                 PutBlob(layout, built->layers[0].blob, built->layers[0].media_type);
                 std::string child = PutBlob(layout, built->manifest,
                                             "application/vnd.oci.image.manifest.v1+json");
                 child.insert(child.size() - 1, R"(,"platform":{"os":"linux","architecture":")" +
                                                    HostArchitecture() + "\"}");
                 for (int i = 0; i < 20; ++i) {
                   child = PutBlob(layout,
                                   R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)" +
                                       child + "]}",
                                   "application/vnd.oci.image.index.v1+json");
                 }
                 return WriteIndexJson(layout, child, tag);
               },
               "nested", nullptr});

  // ---- safe interpretations ----
  c.push_back(Safe("the same path twice in one layer: the later entry wins",
                   OneLayer({File("a", "first\n", 0600), File("a", "second\n", 0640)}),
                   [](const std::string& root) {
                     EXPECT_EQ(Read(root + "/a"), "second\n");
                     EXPECT_EQ(Lstat(root + "/a"), "100640 0:0 1");
                   }));
  c.push_back(Safe("a hardlink chain is one inode",
                   OneLayer({File("a", "shared\n"), Hardlink("b", "a"), Hardlink("c", "b")}),
                   [](const std::string& root) {
                     struct stat a, b, cst;
                     ASSERT_EQ(::lstat((root + "/a").c_str(), &a), 0);
                     ASSERT_EQ(::lstat((root + "/b").c_str(), &b), 0);
                     ASSERT_EQ(::lstat((root + "/c").c_str(), &cst), 0);
                     EXPECT_EQ(a.st_ino, b.st_ino);
                     EXPECT_EQ(a.st_ino, cst.st_ino);
                     EXPECT_EQ(a.st_nlink, 3u);
                     EXPECT_EQ(Read(root + "/c"), "shared\n");
                   }));
  c.push_back(Safe("symlink loops and host paths are served as symlinks, never followed",
                   OneLayer({Symlink("x", "y"), Symlink("y", "x"), Symlink("self", "self"),
                             Symlink("shadow", "/etc/shadow"),
                             Symlink("up", "../../../../etc/passwd")}),
                   [](const std::string& root) {
                     EXPECT_EQ(fsys::read_symlink(root + "/x"), "y");
                     EXPECT_EQ(fsys::read_symlink(root + "/self"), "self");
                     EXPECT_EQ(fsys::read_symlink(root + "/shadow"), "/etc/shadow");
                     EXPECT_EQ(fsys::read_symlink(root + "/up"), "../../../../etc/passwd");
                     struct stat st;
                     EXPECT_NE(::stat((root + "/x").c_str(), &st), 0);
                     EXPECT_EQ(errno, ELOOP);
                   }));
  c.push_back(Safe("a directory deleted and recreated does not show its old entries",
                   Layers({{Dir("d", 0700), File("d/old", "old")},
                           {Whiteout("d")},
                           {Dir("d", 0755), File("d/new", "new")}}),
                   [](const std::string& root) {
                     EXPECT_EQ(Lstat(root + "/d/old"), "missing");
                     EXPECT_EQ(Read(root + "/d/new"), "new");
                     EXPECT_EQ(Lstat(root + "/d"), "40755 0:0 2");
                   }));
  c.push_back(Safe("a directory replaced in the same upper layer loses the lower entries",
                   Layers({{Dir("d"), File("d/old", "old")},
                           {Whiteout("d"), Dir("d"), File("d/new", "new")}}),
                   [](const std::string& root) {
                     EXPECT_EQ(Lstat(root + "/d/old"), "missing");
                     EXPECT_EQ(Read(root + "/d/new"), "new");
                   }));
  {
    Layer schily, libarchive;
    Entry a = File("schily", "x");
    a.xattrs["user.spelling"] = "SCHILY";
    Entry b = File("libarchive", "y");
    b.xattrs["user.spelling"] = "LIBARCHIVE";
    b.xattrs["security.capability"] = std::string("\x01\x00\x00\x02\x00\x20\x00\x00", 8) +
                                      std::string(12, '\0');
    schily.entries = {a};
    libarchive.entries = {b};
    libarchive.format = TarFormat::kPaxLibarchiveXattrs;
    ImageSpec spec;
    spec.layers = {schily, libarchive};
    c.push_back(Safe("xattrs as SCHILY.xattr.* and as LIBARCHIVE.xattr.*", spec,
                     [](const std::string& root) {
                       char buf[64];
                       ssize_t n = ::lgetxattr((root + "/schily").c_str(), "user.spelling", buf,
                                               sizeof buf);
                       EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), "SCHILY");
                       n = ::lgetxattr((root + "/libarchive").c_str(), "user.spelling", buf,
                                       sizeof buf);
                       EXPECT_EQ(std::string(buf, std::max<ssize_t>(n, 0)), "LIBARCHIVE");
                       n = ::lgetxattr((root + "/libarchive").c_str(), "security.capability",
                                       buf, sizeof buf);
                       EXPECT_EQ(n, 20);
                     }));
  }
  {
    std::string deep;
    for (int i = 0; i < 1500; ++i) deep += "d/";
    c.push_back(Safe("nesting 1500 directories deep", OneLayer({File(deep + "leaf", "deep\n")}),
                     [deep](const std::string& root) {
                       // Walk down with openat: the whole path is longer than some tools like.
                       Fd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY));
                       ASSERT_TRUE(dir.valid());
                       for (int i = 0; i < 1500; ++i) {
                         Fd next(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY));
                         ASSERT_TRUE(next.valid()) << "level " << i << ": " << std::strerror(errno);
                         dir = std::move(next);
                       }
                       Fd leaf(::openat(dir.get(), "leaf", O_RDONLY));
                       ASSERT_TRUE(leaf.valid());
                       char buf[8] = {};
                       EXPECT_EQ(::read(leaf.get(), buf, sizeof buf), 5);
                       EXPECT_EQ(std::string(buf, 5), "deep\n");
                     }));
  }
  c.push_back(Safe("names with // and ./ are normalised",
                   OneLayer({Raw("./a//b/./c", EntryType::kFile, "abc"), Raw("a/", EntryType::kDir)}),
                   [](const std::string& root) { EXPECT_EQ(Read(root + "/a/b/c"), "abc"); }));
  c.push_back(Safe("an opaque marker after its directory's entries still hides the lower ones",
                   Layers({{Dir("d"), Dir("d/sub"), File("d/sub/old", "old"), File("d/gone", "g")},
                           {Dir("d"), Dir("d/sub"), File("d/sub/new", "new"), Opaque("d")}}),
                   [](const std::string& root) {
                     EXPECT_EQ(Lstat(root + "/d/gone"), "missing");
                     EXPECT_EQ(Lstat(root + "/d/sub/old"), "missing");
                     EXPECT_EQ(Read(root + "/d/sub/new"), "new");
                   }));
  c.push_back(Safe("an opaque root hides every lower entry",
                   Layers({{File("lower", "x"), Dir("dir"), File("dir/f", "y")},
                           {Opaque(""), File("upper", "z")}}),
                   [](const std::string& root) {
                     EXPECT_EQ(Lstat(root + "/lower"), "missing");
                     EXPECT_EQ(Lstat(root + "/dir"), "missing");
                     EXPECT_EQ(Read(root + "/upper"), "z");
                   }));
  return c;
}

class HostileTest : public ::testing::TestWithParam<size_t> {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::geteuid(), 0u) << "hostile-image tests mount FUSE and loop devices: run as root";
    ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0)
        << "/dev/fuse is missing or not accessible: FUSE mounts are impossible here";
  }
  void SetUp() override {
    ASSERT_EQ(::access(LazyfsBinary().c_str(), X_OK), 0) << "no lazyfs binary at " << LazyfsBinary();
    dir_ = MakeTempDir("lazyfs-hostile");
    ASSERT_EQ(::mkdir((dir_ + "/mnt").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((dir_ + "/loop").c_str(), 0755), 0);
    fsys::remove(std::string("/tmp/") + kEscapeName);
  }
  void TearDown() override {
    ForceUnmount(dir_ + "/mnt");
    ForceUnmount(dir_ + "/loop");
    RemoveTree(dir_).IgnoreError();
  }
  std::string dir_;
};

TEST_P(HostileTest, ClearErrorOrSafeInterpretation) {
  const std::vector<Case> corpus = Corpus();
  ASSERT_LT(GetParam(), corpus.size());
  const Case& c = corpus[GetParam()];
  SCOPED_TRACE(c.name);
  ASSERT_TRUE(c.write(dir_ + "/layout", "hostile").ok());
  const std::string ref = "oci:" + dir_ + "/layout:hostile";
  const std::string store = dir_ + "/store", mnt = dir_ + "/mnt", img = dir_ + "/out.img";

  Spawned m = SpawnLazyfs({"mount", "--store", store, "-q", ref, mnt}, c.env);
  CommandResult mount = Wait(m);
  Spawned w = SpawnLazyfs({"materialize", "--store", store, "-q", ref, img}, c.env);
  CommandResult mat = Wait(w);
  EXPECT_FALSE(fsys::exists(std::string("/tmp/") + kEscapeName)) << "a host path was written";
  if (!c.error.empty()) {
    for (const CommandResult* r : {&mount, &mat}) {
      EXPECT_EQ(r->exit_code, 1) << r->err;
      EXPECT_TRUE(r->err.starts_with("lazyfs: error: ")) << r->err;
      EXPECT_EQ(std::count(r->err.begin(), r->err.end(), '\n'), 1) << "one line: " << r->err;
      EXPECT_NE(r->err.find(c.error), std::string::npos) << r->err;
    }
    EXPECT_FALSE(IsMountpoint(mnt));
    EXPECT_FALSE(fsys::exists(img)) << "a failed materialize left its output behind";
    return;
  }
  ASSERT_EQ(mount.exit_code, 0) << mount.err;
  ASSERT_EQ(mat.exit_code, 0) << mat.err;
  c.check(mnt);
  CommandResult fsck = RunCommand({"e2fsck", "-fn", img});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  CommandResult loop = RunCommand({"mount", "-o", "loop,ro", img, dir_ + "/loop"});
  ASSERT_EQ(loop.exit_code, 0) << loop.err;
  {
    SCOPED_TRACE("the materialized image");
    c.check(dir_ + "/loop");
  }
  auto fuse_listing = ListDirectory(mnt);
  auto ext4_listing = ListDirectory(dir_ + "/loop");
  ASSERT_TRUE(fuse_listing.ok()) << fuse_listing.status().ToString();
  ASSERT_TRUE(ext4_listing.ok()) << ext4_listing.status().ToString();
  // ext4's own lost+found is the one difference, and it adds one link to the root.
  Listing ext4 = *ext4_listing;
  ASSERT_TRUE(ext4.count("/lost+found"));
  ext4.erase("/lost+found");
  ext4.at("/").nlink -= 1;
  EXPECT_EQ(DiffListings(*fuse_listing, ext4), "");
}

// pread of `n` bytes at `offset`, or "<errno text>".
std::string ReadAt(const std::string& path, uint64_t offset, size_t n) {
  auto fd = OpenFile(path, O_RDONLY);
  if (!fd.ok()) return "<" + fd.status().message() + ">";
  std::string out(n, '\0');
  const ssize_t got = ::pread(fd->get(), out.data(), n, static_cast<off_t>(offset));
  if (got < 0) return std::string("<") + std::strerror(errno) + ">";
  out.resize(static_cast<size_t>(got));
  return out;
}

// A legitimate image may carry a file of hundreds of GiB that is almost all hole (lastlog after
// useradd with a large uid). Its holes are never expanded: it mounts, reads and materializes in
// seconds, stays sparse in the ext4 image, and verify agrees. (Not in the corpus above, whose
// listing hashes every byte of every file.)
TEST_F(HostileTest, AHundredGibSparseFileMountsAndMaterializesWithoutItsHoles) {
  constexpr uint64_t kGiB = uint64_t{1} << 30;
  const uint64_t size = 100 * kGiB;
  const std::string data = PseudoRandomBytes(2 << 20, 3);
  ASSERT_TRUE(WriteOciLayout(OneLayer({File("etc/hosts", "127.0.0.1 localhost\n"),
                                       SparseFile("var/log/lastlog", size,
                                                  {{0, "head"}, {40 * kGiB, data},
                                                   {size - 4, "tail"}})}),
                             dir_ + "/layout", "sparse")
                  .ok());
  const std::string ref = "oci:" + dir_ + "/layout:sparse";
  const std::string store = dir_ + "/store", mnt = dir_ + "/mnt", img = dir_ + "/out.img";
  CommandResult mount = RunLazyfs({"mount", "--store", store, "-q", ref, mnt});
  ASSERT_EQ(mount.exit_code, 0) << mount.err;
  CommandResult mat = RunLazyfs({"materialize", "--store", store, "-q", ref, img});
  ASSERT_EQ(mat.exit_code, 0) << mat.err;
  CommandResult loop = RunCommand({"mount", "-o", "loop,ro", img, dir_ + "/loop"});
  ASSERT_EQ(loop.exit_code, 0) << loop.err;
  for (const std::string& root : {mnt, dir_ + "/loop"}) {
    SCOPED_TRACE(root);
    const std::string f = root + "/var/log/lastlog";
    struct stat st;
    ASSERT_EQ(::stat(f.c_str(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
    EXPECT_EQ(ReadAt(f, 0, 4), "head");
    EXPECT_EQ(ReadAt(f, 30 * kGiB, 1 << 20), std::string(1 << 20, '\0'));
    EXPECT_EQ(ReadAt(f, 40 * kGiB, data.size()), data);
    EXPECT_EQ(ReadAt(f, size - 8, 100), std::string(4, '\0') + "tail");
  }
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/loop/var/log/lastlog").c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{16} << 20) << "holes were written";
  ASSERT_EQ(::stat(img.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{256} << 20);
  CommandResult fsck = RunCommand({"e2fsck", "-fn", img});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  CommandResult v = RunLazyfs({"verify", "--store", store, img, ref});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  // The store holds the data, not the holes.
  uint64_t stored = 0;
  for (const auto& e : fsys::recursive_directory_iterator(store)) {
    if (::lstat(e.path().c_str(), &st) == 0) stored += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  EXPECT_LT(stored, uint64_t{128} << 20);
}

// Mtimes at the ends of int64 and around the epoch: every output clamps them to ext4's range
// (1901-12-13T20:45:52Z .. 2446-05-10T22:38:55Z; docs/security.md, "Output") and none fails.
class HostileTimesTest : public HostileTest {};

TEST_F(HostileTimesTest, ExtremeMtimesAreClampedByEveryOutput) {
  struct Time {
    const char* name;
    int64_t recorded, shown;
    const char* text;  // as ls -l and stat print it (UTC)
  };
  const Time times[] = {
      {"max", INT64_MAX, 15'032'385'535, "2446-05-10 22:38:55"},
      {"min", INT64_MIN, -2'147'483'648, "1901-12-13 20:45:52"},
      {"minus1", -1, -1, "1969-12-31 23:59:59"},
      {"zero", 0, 0, "1970-01-01 00:00:00"},
  };
  std::vector<Entry> entries;
  for (const Time& t : times) {
    entries.push_back(File(t.name, t.name));
    entries.back().mtime = t.recorded;
  }
  ASSERT_TRUE(WriteOciLayout(OneLayer(entries), dir_ + "/layout", "times").ok());
  const std::string ref = "oci:" + dir_ + "/layout:times";
  const std::string store = dir_ + "/store", mnt = dir_ + "/mnt", img = dir_ + "/out.img";

  CommandResult ls = RunLazyfs({"ls", "--store", store, "-q", "-l", ref, "/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  for (const Time& t : times) {
    SCOPED_TRACE(t.name);
    EXPECT_NE(ls.out.find(std::string(t.text) + " " + t.name + "\n"), std::string::npos) << ls.out;
    CommandResult js = RunLazyfs({"stat", "--store", store, "-q", "--json", ref, t.name});
    ASSERT_EQ(js.exit_code, 0) << js.err;
    EXPECT_NE(js.out.find("\"mtime\": " + std::to_string(t.shown) + ","), std::string::npos)
        << js.out;
    CommandResult text = RunLazyfs({"stat", "--store", store, "-q", ref, t.name});
    ASSERT_EQ(text.exit_code, 0) << text.err;
    EXPECT_NE(text.out.find(std::string("Modify: ") + t.text), std::string::npos) << text.out;
  }

  CommandResult mount = RunLazyfs({"mount", "--store", store, "-q", ref, mnt});
  ASSERT_EQ(mount.exit_code, 0) << mount.err;
  for (const Time& t : times) {
    struct stat st;
    ASSERT_EQ(::lstat((mnt + "/" + t.name).c_str(), &st), 0) << t.name;
    EXPECT_EQ(st.st_mtim.tv_sec, t.shown) << t.name;
  }

  CommandResult mat = RunLazyfs({"materialize", "--store", store, "-q", ref, img});
  ASSERT_EQ(mat.exit_code, 0) << mat.err;
  CommandResult fsck = RunCommand({"e2fsck", "-fn", img});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  for (const Time& t : times) {
    CommandResult d = RunCommand({"debugfs", "-R", std::string("stat /") + t.name, img});
    ASSERT_EQ(d.exit_code, 0) << d.err;
    // debugfs prints "mtime: 0x...:... -- Sat May 10 22:38:55 2446" in the local zone; the
    // year is the same in every zone for these.
    const std::string year = std::string(t.text).substr(0, 4);
    const size_t at = d.out.find(" mtime: ");
    ASSERT_NE(at, std::string::npos) << d.out;
    const std::string line = d.out.substr(at, d.out.find('\n', at) - at);
    if (t.shown < -86400 || t.shown > 86400) {
      EXPECT_NE(line.find(year), std::string::npos) << line;
    }
  }
  // verify compares the image with the index: the clamped times are the index's as shown.
  CommandResult verify = RunLazyfs({"verify", "--store", store, "-q", img, ref});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

INSTANTIATE_TEST_SUITE_P(Corpus, HostileTest, ::testing::Range<size_t>(0, Corpus().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string name = Corpus()[info.param].name;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return std::to_string(info.param) + "_" + name;
                         });

}  // namespace
}  // namespace lazyfs::testing
