// ImageSource over oci-archive:FILE[:TAG] and docker-archive:FILE[:REPO:TAG]: archives built here
// from the image builder's layouts and blobs (and one written by skopeo), resolved, their blobs
// read back and compared; hostile archives fail naming the archive and the member.
#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "fetch/fetch.h"
#include "tests/fetch/test_layout.h"
#include "tests/support/image_builder.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;
using lazyfs::testing::BuildImage;
using lazyfs::testing::BuiltImage;
using lazyfs::testing::Compression;
using lazyfs::testing::File;
using lazyfs::testing::ImageSpec;
using lazyfs::testing::Layer;

struct Member {
  std::string name;
  std::string data;
  std::string symlink{};  // non-empty: a symlink member
};

// Writes a ustar/pax archive of `members` exactly as given (names are not cleaned up, so hostile
// names get through).
void WriteTar(const std::string& path, const std::vector<Member>& members) {
  struct archive* a = archive_write_new();
  ASSERT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK) << archive_error_string(a);
  for (const Member& m : members) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_perm(e, 0644);
    if (!m.symlink.empty()) {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, m.symlink.c_str());
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_size(e, static_cast<la_int64_t>(m.data.size()));
    }
    ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
    if (!m.data.empty()) {
      ASSERT_EQ(archive_write_data(a, m.data.data(), m.data.size()),
                static_cast<la_ssize_t>(m.data.size()));
    }
    archive_entry_free(e);
  }
  ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
}

// The files of a directory as members named relative to it (as `tar -C dir -cf` would, without
// the "./" prefix), optionally leaving some out or replacing their bytes.
std::vector<Member> MembersOf(const std::string& dir) {
  std::vector<Member> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    auto data = ReadFileToString(e.path().string());
    EXPECT_TRUE(data.ok());
    out.push_back({std::filesystem::relative(e.path(), dir).string(), data.ok() ? *data : ""});
  }
  return out;
}

ImageSpec TwoLayerSpec(const std::string& tag) {
  ImageSpec spec;
  spec.architecture = "amd64";
  Layer bottom;
  bottom.compression = Compression::kGzip;
  bottom.entries = {File("etc/hostname", "box-" + tag + "\n"), File("bin/tool", "#!/bin/sh\n")};
  Layer top;
  top.compression = Compression::kNone;
  top.entries = {File("etc/motd", "hello from " + tag + "\n")};
  spec.layers = {bottom, top};
  return spec;
}

Result<std::unique_ptr<ImageSource>> Open(const std::string& ref_text, const std::string& store) {
  LAZYFS_ASSIGN_OR_RETURN(ImageRef ref, ImageRef::Parse(ref_text));
  SourceOptions options;
  options.store = StoreLayout{store};
  options.platform = *Platform::Parse("linux/amd64");
  return OpenImageSource(ref, options);
}

std::string ReadBlob(ImageSource& source, const Digest& digest, uint64_t size) {
  auto fd = source.OpenBlob(digest, size);
  EXPECT_TRUE(fd.ok()) << fd.status().ToString();
  if (!fd.ok()) return "";
  std::string out(size + 1, '\0');
  auto n = PreadFull(fd->get(), out.data(), out.size(), 0);
  EXPECT_TRUE(n.ok());
  out.resize(n.ok() ? *n : 0);
  return out;
}

// Every layer and the config of `image` as the source serves them are the built ones.
void ExpectServes(ImageSource& source, const ImageDescriptor& image, const BuiltImage& built) {
  EXPECT_EQ(image.config_digest, built.config_digest);
  auto config = source.ReadSmallBlob(image.config_digest, 1 << 20);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(*config, built.config);
  ASSERT_EQ(image.layers.size(), built.layers.size());
  for (size_t i = 0; i < built.layers.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(image.layers[i].digest, built.layers[i].digest);
    EXPECT_EQ(image.layers[i].diff_id, built.layers[i].diff_id);
    EXPECT_EQ(image.layers[i].size, built.layers[i].blob.size());
    EXPECT_EQ(ReadBlob(source, image.layers[i].digest, image.layers[i].size),
              built.layers[i].blob);
  }
}

void ExpectError(const Result<ImageDescriptor>& got, StatusCode code,
                 const std::vector<std::string>& mentions) {
  ASSERT_FALSE(got.ok()) << "resolved, but should have failed";
  EXPECT_EQ(got.status().code(), code) << got.status().ToString();
  for (const std::string& m : mentions) EXPECT_THAT(got.status().message(), HasSubstr(m));
}

class ArchiveTest : public ::testing::Test {
 protected:
  TempDir tmp_;
  std::string layout_ = tmp_.path() + "/layout";
  std::string file_ = tmp_.path() + "/image.tar";
  std::string store_ = tmp_.path() + "/store";

  Result<ImageDescriptor> Resolve(const std::string& ref, const std::string& store) {
    LAZYFS_ASSIGN_OR_RETURN(auto source, Open(ref, store));
    return source->Resolve();
  }
};

// ----- oci-archive -----

TEST_F(ArchiveTest, OciArchiveOfALayoutResolvesTheTaggedImage) {
  const ImageSpec v1 = TwoLayerSpec("v1"), v2 = TwoLayerSpec("v2");
  auto d1 = lazyfs::testing::WriteOciLayout(v1, layout_, "v1");
  auto d2 = lazyfs::testing::WriteOciLayout(v2, layout_, "v2");
  ASSERT_TRUE(d1.ok() && d2.ok());
  // tar -C writes "./"-prefixed names and directory members, as many hand-made archives have.
  ASSERT_EQ(std::system(("tar -C " + layout_ + " -cf " + file_ + " .").c_str()), 0);

  for (const auto& [tag, digest, spec] :
       {std::tuple{"v1", *d1, v1}, std::tuple{"v2", *d2, v2}}) {
    SCOPED_TRACE(tag);
    auto source = Open("oci-archive:" + file_ + ":" + tag, store_);
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    auto image = (*source)->Resolve();
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    EXPECT_EQ(image->manifest_digest, digest);
    EXPECT_EQ(image->reference, "oci-archive:" + file_ + ":" + tag);
    auto built = BuildImage(spec);
    ASSERT_TRUE(built.ok());
    ExpectServes(**source, *image, *built);
  }
  // Two images and no tag: the error lists the names.
  ExpectError(Resolve("oci-archive:" + file_, store_), StatusCode::kInvalidArgument,
              {"oci-archive:" + file_, "v1", "v2"});
  ExpectError(Resolve("oci-archive:" + file_ + ":v3", store_), StatusCode::kNotFound,
              {"no image named \"v3\"", "v1, v2"});
}

TEST_F(ArchiveTest, OciArchiveWrittenBySkopeoResolves) {
  // A writer that is not lazyfs: skopeo copies the layout into an oci-archive offline.
  ASSERT_EQ(::access("/usr/bin/skopeo", X_OK), 0) << "skopeo is needed (apt-get install skopeo)";
  const ImageSpec spec = TwoLayerSpec("skopeo");
  auto digest = lazyfs::testing::WriteOciLayout(spec, layout_, "app");
  ASSERT_TRUE(digest.ok());
  const std::string cmd = "skopeo --insecure-policy copy -q oci:" + layout_ + ":app oci-archive:" +
                          file_ + ":app >" + tmp_.path() + "/skopeo.log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << *ReadFileToString(tmp_.path() + "/skopeo.log");

  auto source = Open("oci-archive:" + file_ + ":app", store_);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  auto built = BuildImage(spec);
  ASSERT_TRUE(built.ok());
  // skopeo rewrites the manifest and may compress layers (so no blob digests to compare); the
  // uncompressed content is the built one.
  ASSERT_EQ(image->layers.size(), built->layers.size());
  for (size_t i = 0; i < built->layers.size(); ++i) {
    SCOPED_TRACE(i);
    const std::string& type = image->layers[i].media_type;
    const Compression c = type.ends_with("+gzip")   ? Compression::kGzip
                          : type.ends_with("+zstd") ? Compression::kZstd
                                                    : Compression::kNone;
    const std::string blob = ReadBlob(**source, image->layers[i].digest, image->layers[i].size);
    auto tar = lazyfs::testing::Decompress(blob, c);
    ASSERT_TRUE(tar.ok()) << tar.status().ToString();
    EXPECT_EQ(Sha256Of(*tar), built->layers[i].diff_id);
    EXPECT_EQ(image->layers[i].diff_id, built->layers[i].diff_id);
  }
}

TEST_F(ArchiveTest, OciArchiveWithACorruptBlobFailsWithDataLoss) {
  auto digest = lazyfs::testing::WriteOciLayout(TwoLayerSpec("x"), layout_, "x");
  ASSERT_TRUE(digest.ok());
  auto built = BuildImage(TwoLayerSpec("x"));
  ASSERT_TRUE(built.ok());
  const std::string victim = "blobs/sha256/" + built->layers[1].digest.Hex();
  std::vector<Member> members = MembersOf(layout_);
  bool found = false;
  for (Member& m : members) {
    if (m.name != victim) continue;
    m.data[m.data.size() / 2] ^= 1;  // same length, one bit off
    found = true;
  }
  ASSERT_TRUE(found) << victim;
  WriteTar(file_, members);
  ExpectError(Resolve("oci-archive:" + file_ + ":x", store_), StatusCode::kDataLoss,
              {"oci-archive:" + file_, victim, "digest mismatch"});
  // Nothing of the bad blob was kept.
  EXPECT_FALSE(std::filesystem::exists(store_ + "/blobs/sha256/" + built->layers[1].digest.Hex()));
}

TEST_F(ArchiveTest, OciArchiveMissingALayerOrIndexFails) {
  ASSERT_TRUE(lazyfs::testing::WriteOciLayout(TwoLayerSpec("x"), layout_, "x").ok());
  auto built = BuildImage(TwoLayerSpec("x"));
  ASSERT_TRUE(built.ok());
  std::vector<Member> members = MembersOf(layout_);
  std::vector<Member> no_layer, no_index;
  for (const Member& m : members) {
    if (m.name != "blobs/sha256/" + built->layers[0].digest.Hex()) no_layer.push_back(m);
    if (m.name != "index.json") no_index.push_back(m);
  }
  WriteTar(file_, no_layer);
  ExpectError(Resolve("oci-archive:" + file_ + ":x", store_), StatusCode::kNotFound,
              {"oci-archive:" + file_, built->layers[0].digest.ToString(), "not in the archive"});
  WriteTar(file_, no_index);
  ExpectError(Resolve("oci-archive:" + file_ + ":x", store_), StatusCode::kNotFound,
              {"oci-archive:" + file_, "no index.json"});
}

TEST_F(ArchiveTest, HostileOrUnreadableArchivesFailNamingWhatIsWrong) {
  ExpectError(Resolve("oci-archive:" + tmp_.path() + "/absent.tar", store_),
              StatusCode::kNotFound, {"absent.tar"});
  ASSERT_TRUE(WriteFileAtomic(file_, std::string(4096, 'x')).ok());
  ExpectError(Resolve("docker-archive:" + file_, store_), StatusCode::kInvalidArgument,
              {"docker-archive:" + file_, "tar"});
  WriteTar(file_, {{"oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"},
                   {"blobs/sha256/../../../etc/passwd", "x"}});
  ExpectError(Resolve("oci-archive:" + file_, store_), StatusCode::kInvalidArgument,
              {"oci-archive:" + file_, "blobs/sha256/../../../etc/passwd", "\"..\""});
  WriteTar(file_, {{"manifest.json", "[" + std::string(5 << 20, ' ') + "]"}});
  ExpectError(Resolve("docker-archive:" + file_, store_), StatusCode::kResourceExhausted,
              {"docker-archive:" + file_, "manifest.json"});
  WriteTar(file_, {{"manifest.json", "{\"Config\": 1}"}});
  ExpectError(Resolve("docker-archive:" + file_, store_), StatusCode::kInvalidArgument,
              {"docker-archive:" + file_, "manifest.json", "not a JSON array"});
  WriteTar(file_, {{"index.json", "{}"}});
  ExpectError(Resolve("docker-archive:" + file_, store_), StatusCode::kNotFound,
              {"no manifest.json"});
}

TEST_F(ArchiveTest, MemberNamesInMessagesCannotDriveTheTerminal) {
  // A name with an escape sequence and a line break: quoted and escaped, never printed raw.
  WriteTar(file_, {{"oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"},
                   {"blobs/\x1b[2J\nforged line/../../x", "x"}});
  auto got = Resolve("oci-archive:" + file_, store_);
  ExpectError(got, StatusCode::kInvalidArgument,
              {"member \"blobs/\\x1b[2J\\x0aforged line/../../x\"", "\"..\""});
  if (!got.ok()) {
    EXPECT_EQ(got.status().message().find('\x1b'), std::string::npos);
    EXPECT_EQ(got.status().message().find('\n'), std::string::npos);
  }
}

// ----- docker-archive -----

// A `docker save` tarball: per layer a <id>/layer.tar, the config as <hex>.json, manifest.json.
struct SavedImage {
  std::vector<std::string> repo_tags;
  BuiltImage built;
};

std::vector<Member> DockerSave(const std::vector<SavedImage>& images) {
  std::vector<Member> members;
  nlohmann::json manifest = nlohmann::json::array();
  for (const SavedImage& image : images) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& layer : image.built.layers) {
      const std::string dir = layer.diff_id.Hex();
      bool seen = false;
      for (const Member& m : members) seen |= m.name == dir + "/layer.tar";
      if (!seen) {
        members.push_back({dir + "/VERSION", "1.0"});
        members.push_back({dir + "/layer.tar", layer.blob});
      }
      layers.push_back(dir + "/layer.tar");
    }
    members.push_back({image.built.config_digest.Hex() + ".json", image.built.config});
    manifest.push_back({{"Config", image.built.config_digest.Hex() + ".json"},
                        {"RepoTags", image.repo_tags},
                        {"Layers", layers}});
  }
  members.push_back({"manifest.json", manifest.dump()});
  return members;
}

BuiltImage Built(const ImageSpec& spec) {
  auto built = BuildImage(spec);
  EXPECT_TRUE(built.ok()) << built.status().ToString();
  return built.ok() ? *built : BuiltImage{};
}

TEST_F(ArchiveTest, DockerArchiveServesItsLayersUnderComputedDigests) {
  // Layers as docker save writes them (uncompressed), and one gzip layer as newer dockers do.
  const BuiltImage app = Built(TwoLayerSpec("app"));
  const BuiltImage db = Built(TwoLayerSpec("db"));
  WriteTar(file_, DockerSave({{{"example.com/app:1.0", "app:latest"}, app}, {{"db:5"}, db}}));

  auto source = Open("docker-archive:" + file_, store_);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  auto first = (*source)->Resolve();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ExpectServes(**source, *first, app);
  EXPECT_EQ(first->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(first->layers[1].media_type, "application/vnd.oci.image.layer.v1.tar");
  EXPECT_EQ(first->layers[1].digest, *first->layers[1].diff_id);

  // The synthesised manifest is kept, and the same archive gives the same digest in any store.
  auto manifest = (*source)->ReadSmallBlob(first->manifest_digest, 1 << 20);
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  EXPECT_EQ(Sha256Of(*manifest), first->manifest_digest);
  auto again = Resolve("docker-archive:" + file_, tmp_.path() + "/store2");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->manifest_digest, first->manifest_digest);

  // Selection by RepoTags, normalised as references are.
  for (const char* name : {"db:5", "docker.io/library/db:5"}) {
    SCOPED_TRACE(name);
    auto src = Open("docker-archive:" + file_ + ":" + std::string(name), store_);
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    auto image = (*src)->Resolve();
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    ExpectServes(**src, *image, db);
  }
  auto tagged = Resolve("docker-archive:" + file_ + ":example.com/app:1.0", store_);
  ASSERT_TRUE(tagged.ok()) << tagged.status().ToString();
  EXPECT_EQ(tagged->manifest_digest, first->manifest_digest);
  ExpectError(Resolve("docker-archive:" + file_ + ":db:6", store_), StatusCode::kNotFound,
              {"docker-archive:" + file_, "no image tagged \"db:6\"", "app:latest", "db:5"});

  // `docker save | gzip` output is read as well (docker load accepts it too).
  ASSERT_EQ(std::system(("gzip -c " + file_ + " > " + file_ + ".gz").c_str()), 0);
  auto gzipped = Resolve("docker-archive:" + file_ + ".gz", tmp_.path() + "/store3");
  ASSERT_TRUE(gzipped.ok()) << gzipped.status().ToString();
  EXPECT_EQ(gzipped->manifest_digest, first->manifest_digest);
}

TEST_F(ArchiveTest, DockerArchiveFollowsLayerSymlinks) {
  // Older docker save links a layer shared by two images to its first copy.
  const BuiltImage app = Built(TwoLayerSpec("app"));
  std::vector<Member> members = {{"first/layer.tar", app.layers[0].blob},
                                 {"second/layer.tar", "", "../first/layer.tar"},
                                 {"top/layer.tar", app.layers[1].blob},
                                 {"config.json", app.config}};
  nlohmann::json manifest = nlohmann::json::array(
      {{{"Config", "config.json"}, {"RepoTags", nullptr},
        {"Layers", {"second/layer.tar", "./top/layer.tar"}}}});
  members.push_back({"manifest.json", manifest.dump()});
  WriteTar(file_, members);
  auto source = Open("docker-archive:" + file_, store_);
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  ExpectServes(**source, *image, app);
}

TEST_F(ArchiveTest, HostileDockerArchivesFailNamingTheMember) {
  const BuiltImage app = Built(TwoLayerSpec("app"));
  auto with_layers = [&](std::vector<std::string> layers, std::vector<Member> extra = {}) {
    std::vector<Member> members = {{"l0/layer.tar", app.layers[0].blob},
                                   {"l1/layer.tar", app.layers[1].blob},
                                   {"config.json", app.config}};
    for (Member& m : extra) members.push_back(std::move(m));
    nlohmann::json manifest = nlohmann::json::array(
        {{{"Config", "config.json"}, {"RepoTags", {"app:1"}}, {"Layers", layers}}});
    members.push_back({"manifest.json", manifest.dump()});
    WriteTar(file_, members);
  };
  const std::string ref = "docker-archive:" + file_;

  with_layers({"l0/layer.tar", "../l1/layer.tar"});
  ExpectError(Resolve(ref, store_), StatusCode::kInvalidArgument,
              {ref, "\"../l1/layer.tar\"", "outside the archive"});
  with_layers({"l0/layer.tar", "l2/layer.tar"});
  ExpectError(Resolve(ref, store_), StatusCode::kNotFound,
              {ref, "\"l2/layer.tar\"", "not in the archive"});
  with_layers({"l0/layer.tar", "l2/layer.tar"}, {{"l2/layer.tar", "", "../../etc/passwd"}});
  ExpectError(Resolve(ref, store_), StatusCode::kInvalidArgument,
              {ref, "l2/layer.tar", "outside the archive"});
  // The uncompressed layer is not the one the config's diff_ids describe.
  with_layers({"l0/layer.tar", "l0/layer2.tar"}, {{"l0/layer2.tar", "not the layer"}});
  ExpectError(Resolve(ref, tmp_.path() + "/fresh"), StatusCode::kDataLoss,
              {ref, "l0/layer2.tar", "diff_id"});
  // Fewer layers than diff_ids.
  with_layers({"l0/layer.tar"});
  ExpectError(Resolve(ref, store_), StatusCode::kInvalidArgument, {ref, "diff_ids"});
}

}  // namespace
}  // namespace lazyfs::fetch
