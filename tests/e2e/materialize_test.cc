// End to end for `lazyfs materialize` and `lazyfs verify`: the binary against a real registry
// and OCI layouts, images checked by e2fsck -fn, a read-only loop mount compared with the
// ExpectedListing oracle, the real veritysetup, and byte-for-byte reproducibility. Needs root
// (loop mounts); a test that cannot get what it needs fails and says so.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/fd.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/suite.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"
#include "tests/support/registry.h"

namespace lazyfs::testing {
namespace {

// More fixtures beside the foundation image: what only shows at scale or at the edges.
ImageSpec EdgesSpec() {
  Layer l1;
  l1.compression = Compression::kZstd;
  l1.entries.push_back(Dir("big", 0755));
  for (int i = 0; i < 20000; ++i) {
    l1.entries.push_back(File("big/entry-" + std::to_string(i), i % 997 == 0 ? "x" : ""));
  }
  std::string deep;
  for (int i = 0; i < 60; ++i) deep += (deep.empty() ? "" : "/") + std::string("d") + std::to_string(i);
  l1.entries.push_back(File(deep + "/leaf", "sixty levels down\n"));
  l1.entries.push_back(File("ids/high", "uid beyond 16 bits\n", 0640, 100000, 200000));
  l1.entries.push_back(Dir("ids/dir", 0700, 4000000, 4000000));
  Entry cap = File("bin/ping", "#!/bin/sh\n", 04755);
  cap.xattrs["security.capability"] =
      std::string("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  cap.xattrs["user.big"] = std::string(2000, 'v');  // needs an xattr block
  l1.entries.push_back(cap);
  l1.entries.push_back(Fifo("run/fifo", 0600));
  l1.entries.push_back(CharDev("dev/tty", 5, 0, 0666));
  l1.entries.push_back(BlockDev("dev/big", 259, 100000, 0660));
  l1.entries.push_back(Symlink("links/long", std::string(300, 'l')));
  l1.entries.push_back(Symlink("links/short", "../bin/ping"));
  l1.entries.push_back(File(std::string(255, 'L'), "255-byte name\n"));
  l1.entries.push_back(File("sparse", std::string(1 << 20, '\0') + "end", 0644));
  Entry future = File("future", "2100\n");
  future.mtime = 4102444800;
  l1.entries.push_back(future);
  Layer l2;
  l2.compression = Compression::kGzip;
  l2.entries = {Whiteout("big/entry-5"), Opaque("ids"), File("ids/after", "new\n"),
                Hardlink("bin/ping2", "bin/ping"), Hardlink("bin/ping3", "bin/ping")};
  ImageSpec spec;
  spec.layers = {l1, l2};
  return spec;
}

struct Fixture {
  std::string name;
  ImageSpec spec;
};

// The suite's registry, layouts and scratch space; removed with the suite.
struct World : SuiteWorld {
  std::vector<Fixture> fixtures;
};
std::unique_ptr<World> world;

std::string LayoutRef(const std::string& name) {
  return "oci:" + world->work + "/layout:" + name;
}
std::string FoundationRef() { return "docker://" + world->registry->host() + "/mat/foundation:1"; }

class MaterializeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = std::make_unique<World>();
    ASSERT_NO_FATAL_FAILURE(StartSuiteWorld(*world, "lazyfs-mat-e2e", /*need_fuse=*/false));
    world->fixtures = {{"foundation", FoundationSpec()}, {"edges", EdgesSpec()}};
    for (const Fixture& f : world->fixtures) {
      auto d = WriteOciLayout(f.spec, world->work + "/layout", f.name);
      ASSERT_TRUE(d.ok()) << f.name << ": " << d.status().ToString();
    }
    Status s = PushOciLayout(world->work + "/layout", "foundation", world->registry->host(),
                             "mat/foundation", "1");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  static void TearDownTestSuite() { world.reset(); }
  void SetUp() override {
    ASSERT_NE(world, nullptr);
    ASSERT_NE(world->registry, nullptr) << "the suite's registry did not start";
    dir_ = MakeTempDir("lazyfs-mat-test");
    store_ = dir_ + "/store";
  }
  void TearDown() override {
    ForceUnmount(dir_ + "/loop");
    RemoveTree(dir_).IgnoreError();
  }

  CommandResult Materialize(const std::string& ref, const std::string& out,
                            std::vector<std::string> extra = {},
                            const std::string& source_date_epoch = "") {
    std::vector<std::string> argv = {"env"};
    if (!source_date_epoch.empty()) argv.push_back("SOURCE_DATE_EPOCH=" + source_date_epoch);
    argv.insert(argv.end(), {LazyfsBinary(), "materialize", "--store", store_, "-q"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {ref, out});
    return RunCommand(argv);
  }

  nlohmann::json Sidecar(const std::string& img) {
    auto text = ReadFileToString(img + ".json");
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    return nlohmann::json::parse(text.ok() ? *text : "{}", nullptr, false);
  }

  std::string dir_, store_;
};

// Flips one bit of a file in place.
void FlipBit(const std::string& path, uint64_t off) {
  auto fd = OpenFile(path, O_RDWR);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  char c = 0;
  ASSERT_EQ(::pread(fd->get(), &c, 1, static_cast<off_t>(off)), 1);
  c = static_cast<char>(c ^ 1);
  ASSERT_EQ(::pwrite(fd->get(), &c, 1, static_cast<off_t>(off)), 1);
}

TEST_F(MaterializeTest, LoopMountedImageEqualsTheOracleForEveryFixture) {
  for (const Fixture& f : world->fixtures) {
    SCOPED_TRACE(f.name);
    const std::string img = dir_ + "/" + f.name + ".img";
    CommandResult r = Materialize(LayoutRef(f.name), img);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    CommandResult fsck = RunCommand({"e2fsck", "-fn", img});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
    auto expected = ExpectedListing(f.spec);
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    auto got = ListExt4Image(img, dir_ + "/loop");
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(DiffListings(*expected, *got), "");
    CommandResult v = RunLazyfs({"verify", "--store", store_, img, LayoutRef(f.name)});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  }
}

// The same image gives the same bytes: two stores, two directories, from the registry; the
// filesystem's own times follow SOURCE_DATE_EPOCH.
TEST_F(MaterializeTest, SameImageTwiceIsByteIdentical) {
  const std::string a = dir_ + "/a", b = dir_ + "/b";
  ASSERT_EQ(::mkdir(a.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(b.c_str(), 0755), 0);
  CommandResult r = Materialize(FoundationRef(), a + "/out.img", {}, "1700000000");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  store_ = dir_ + "/store2";
  r = Materialize(FoundationRef(), b + "/out.img", {}, "1700000000");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* suffix : {"out.img", "out.img.verity", "out.img.json"}) {
    CommandResult cmp = RunCommand({"cmp", a + "/" + suffix, b + "/" + suffix});
    EXPECT_EQ(cmp.exit_code, 0) << suffix << ": " << cmp.out << cmp.err;
  }
  CommandResult dump = RunCommand({"dumpe2fs", "-h", a + "/out.img"});
  EXPECT_NE(dump.out.find("Filesystem created:       Tue Nov 14 22:13:20 2023"), std::string::npos)
      << dump.out;
  // A different SOURCE_DATE_EPOCH changes the filesystem's own times, nothing else.
  r = Materialize(FoundationRef(), b + "/later.img", {}, "1800000000");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(RunCommand({"cmp", "-s", a + "/out.img", b + "/later.img"}).exit_code, 0);
  nlohmann::json side = Sidecar(a + "/out.img");
  EXPECT_EQ(side["source"], FoundationRef());
  EXPECT_TRUE(side["manifest_digest"].get<std::string>().starts_with("sha256:"));
  EXPECT_EQ(side["verity"]["hash_file"], "out.img.verity");
  // A bad SOURCE_DATE_EPOCH is a clear error and leaves nothing.
  r = Materialize(FoundationRef(), b + "/bad.img", {}, "yesterday");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("SOURCE_DATE_EPOCH"), std::string::npos) << r.err;
  EXPECT_NE(::access((b + "/bad.img").c_str(), F_OK), 0);
}

// veritysetup accepts the tree (beside the image and appended to it) and rejects it after one
// bit of a file flips; lazyfs verify names the block range and the file.
TEST_F(MaterializeTest, VerityAndVerifyCatchAFlippedBit) {
  const std::string img = dir_ + "/v.img";
  CommandResult r = Materialize(FoundationRef(), img);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json side = Sidecar(img);
  const std::string root = side["verity"]["root_hash"];
  const std::string salt = side["verity"]["salt"];
  CommandResult ok = RunCommand({"veritysetup", "verify", img, img + ".verity", root});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  CommandResult dump = RunCommand({"veritysetup", "dump", img + ".verity"});
  EXPECT_NE(dump.out.find(salt), std::string::npos) << dump.out;
  CommandResult v = RunLazyfs({"verify", "--store", store_, img, FoundationRef()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;

  const std::string app = dir_ + "/append.img";
  r = Materialize(FoundationRef(), app, {"--verity=append", "--read-only"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json aside = Sidecar(app);
  const uint64_t offset = aside["verity"]["hash_offset"];
  EXPECT_EQ(offset, aside["image"]["size"].get<uint64_t>());
  EXPECT_EQ(offset % 4096, 0u);
  CommandResult aok = RunCommand({"veritysetup", "verify", "--hash-offset=" + std::to_string(offset),
                                  app, app, aside["verity"]["root_hash"]});
  EXPECT_EQ(aok.exit_code, 0) << aok.out << aok.err;
  CommandResult av = RunLazyfs({"verify", app});
  EXPECT_EQ(av.exit_code, 0) << av.out << av.err;

  // One bit of /etc/motd's content.
  CommandResult blocks = RunCommand({"debugfs", "-R", "blocks /etc/motd", img});
  ASSERT_EQ(blocks.exit_code, 0) << blocks.err;
  const uint64_t block = std::stoull(blocks.out);
  FlipBit(img, block * 4096 + 3);
  CommandResult bad = RunCommand({"veritysetup", "verify", img, img + ".verity", root});
  EXPECT_NE(bad.exit_code, 0) << bad.out;
  v = RunLazyfs({"verify", "--store", store_, img, FoundationRef()});
  EXPECT_EQ(v.exit_code, 1);
  const std::string range = "data blocks " + std::to_string(block) + "-" + std::to_string(block);
  EXPECT_NE(v.out.find(range), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("/etc/motd: content"), std::string::npos) << v.out;
  EXPECT_TRUE(v.err.starts_with("lazyfs: error: ")) << v.err;
}

TEST_F(MaterializeTest, SizeOptionsAndErrors) {
  const std::string small = dir_ + "/small.img";
  CommandResult r = Materialize(LayoutRef("foundation"), small, {"--size", "1M"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("tree needs "), std::string::npos) << r.err;
  EXPECT_NE(::access(small.c_str(), F_OK), 0);
  EXPECT_NE(::access((small + ".json").c_str(), F_OK), 0);
  r = Materialize(LayoutRef("foundation"), small, {"--size", "lots"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad --size"), std::string::npos) << r.err;
  const std::string labelled = dir_ + "/l.img";
  r = Materialize(LayoutRef("foundation"), labelled, {"--size", "64M", "--label", "rootfs"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st;
  ASSERT_EQ(::stat(labelled.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 64 << 20);
  EXPECT_EQ(RunCommand({"e2label", labelled}).out, "rootfs\n");
  const std::string roomy = dir_ + "/roomy.img";
  r = Materialize(LayoutRef("foundation"), roomy, {"--free", "300"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(::stat(roomy.c_str(), &st), 0);
  EXPECT_GT(st.st_size, 3 * 6 << 20);  // 300% of the 6 MiB+ content is free
}

// --add puts host files into the guest as one more layer: replacing a file, creating parents,
// with the given owner and mode, recorded in the sidecar, the same bytes for the same inputs.
TEST_F(MaterializeTest, GuestAdditionsAreALayerOnTopAndReproducible) {
  const std::string agent = dir_ + "/agent", hostname = dir_ + "/hostname";
  ASSERT_TRUE(WriteFileAtomic(agent, "#!/bin/sh\necho agent\n").ok());
  ASSERT_TRUE(WriteFileAtomic(hostname, "guest\n").ok());
  const std::vector<std::string> adds = {"--add", agent + ":/opt/agent/bin/agent:0:0:0755",
                                         "--add", hostname + ":/etc/motd:1000:1000:600"};
  const std::string a = dir_ + "/a.img", b = dir_ + "/b.img";
  CommandResult r = Materialize(LayoutRef("foundation"), a, adds);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WriteFileAtomic(agent, "#!/bin/sh\necho agent\n").ok());  // a new host mtime
  r = Materialize(LayoutRef("foundation"), b, adds);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RunCommand({"cmp", a, b}).exit_code, 0);
  EXPECT_EQ(RunCommand({"e2fsck", "-fn", a}).exit_code, 0);
  nlohmann::json side = Sidecar(a);
  ASSERT_EQ(side["additions"].size(), 2u);
  EXPECT_EQ(side["additions"][1]["guest_path"], "/etc/motd");
  EXPECT_EQ(side["additions"][1]["mode"], "0600");

  auto expected = ExpectedListing(FoundationSpec());
  ASSERT_TRUE(expected.ok());
  auto got = ListExt4Image(a, dir_ + "/loop");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->count("/opt/agent/bin/agent"));
  EXPECT_EQ(got->at("/opt/agent/bin/agent").mode, 0755u);
  EXPECT_EQ(got->at("/opt/agent/bin/agent").type, 'f');
  EXPECT_EQ(got->at("/opt/agent").type, 'd');
  EXPECT_EQ(got->at("/etc/motd").uid, 1000u);
  EXPECT_EQ(got->at("/etc/motd").mode, 0600u);
  EXPECT_EQ(got->at("/etc/motd").size, 6u);
  // Everything else is the image as its layers say.
  for (const char* p : {"/opt/agent", "/opt/agent/bin", "/opt/agent/bin/agent", "/etc/motd"}) {
    got->erase(p);
    expected->erase(p);
  }
  got->at("/opt").nlink -= 1;
  EXPECT_EQ(DiffListings(*expected, *got), "");

  // lazyfs verify rebuilds the additions from the sidecar: no host files, no differences.
  CommandResult v = RunLazyfs({"verify", "--store", store_, a, LayoutRef("foundation")});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

// --add-tar applies a tar as one more layer with the image layers' rules: new files and
// directories, a symlink, a hardlink, a fifo, a device, xattrs, a whiteout of an image file and
// an opaque directory. The loop-mounted image equals the oracle's listing of the image's layers
// plus the tar, the same inputs give the same bytes, and the sidecar records the tar's sha256.
ImageSpec WithTarLayer(ImageSpec spec, const std::vector<Entry>& entries) {
  Layer l;
  l.entries = entries;
  spec.layers.push_back(l);
  return spec;
}

std::vector<Entry> GuestTarEntries() {
  Entry conf = File("etc/agent.conf", "port=1024\n", 0640, 0, 4000);
  conf.xattrs["user.origin"] = "guest tar";
  return {conf,
          Dir("opt/agent", 0750, 1000, 1000),
          File("opt/agent/run", "#!/bin/sh\necho agent\n", 0755, 1000, 1000),
          Hardlink("opt/agent/run-again", "opt/agent/run"),
          Symlink("usr/bin/agent", "/opt/agent/run"),
          Fifo("run/agent.fifo", 0600),
          CharDev("dev/agent", 10, 200, 0660),
          Whiteout("etc/hostname"),
          Dir("home/user", 0750, 1000, 1000),
          Opaque("home/user"),
          File("home/user/fresh", "a fresh home\n", 0600, 1000, 1000)};
}

TEST_F(MaterializeTest, AddedTarIsOneMoreLayerWithWhiteoutsAndReproducible) {
  auto tar = BuildLayerTar(GuestTarEntries());
  ASSERT_TRUE(tar.ok()) << tar.status().ToString();
  const std::string tar_path = dir_ + "/guest.tar";
  ASSERT_TRUE(WriteFileAtomic(tar_path, *tar).ok());
  const std::string a = dir_ + "/a.img", b = dir_ + "/b.img";
  CommandResult r = Materialize(LayoutRef("foundation"), a, {"--add-tar", tar_path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Materialize(LayoutRef("foundation"), b, {"--add-tar", tar_path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RunCommand({"cmp", a, b}).exit_code, 0);
  EXPECT_EQ(RunCommand({"cmp", a + ".verity", b + ".verity"}).exit_code, 0);
  CommandResult fsck = RunCommand({"e2fsck", "-fn", a});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  nlohmann::json side = Sidecar(a);
  ASSERT_EQ(side["added_tars"].size(), 1u);
  EXPECT_EQ(side["added_tars"][0]["sha256"], Sha256Of(*tar).ToString());

  auto expected = ExpectedListing(WithTarLayer(FoundationSpec(), GuestTarEntries()));
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  ASSERT_FALSE(expected->count("/etc/hostname"));  // the oracle applied the whiteout
  ASSERT_FALSE(expected->count("/home/user/notes"));  // and the opaque directory
  auto got = ListExt4Image(a, dir_ + "/loop");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(DiffListings(*expected, *got), "");

  // lazyfs verify compares with the image plus the same tar, and insists on getting it.
  CommandResult v =
      RunLazyfs({"verify", "--store", store_, "--add-tar", tar_path, a, LayoutRef("foundation")});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  CommandResult missing = RunLazyfs({"verify", "--store", store_, a, LayoutRef("foundation")});
  EXPECT_NE(missing.exit_code, 0) << missing.out;
  EXPECT_NE(missing.err.find("--add-tar"), std::string::npos) << missing.err;

  // --add files go on top of every tar, wherever they are on the command line; verify rebuilds
  // both in that order.
  const std::string host = dir_ + "/run";
  ASSERT_TRUE(WriteFileAtomic(host, "#!/bin/sh\necho from --add\n").ok());
  const std::string both = dir_ + "/both.img";
  r = Materialize(LayoutRef("foundation"), both,
                  {"--add", host + ":/opt/agent/run:0:0:0700", "--add-tar", tar_path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto got_both = ListExt4Image(both, dir_ + "/loop");
  ASSERT_TRUE(got_both.ok()) << got_both.status().ToString();
  EXPECT_EQ(got_both->at("/opt/agent/run").mode, 0700u);
  EXPECT_EQ(got_both->at("/opt/agent/run").size, 26u);
  EXPECT_EQ(got_both->at("/opt/agent/run").nlink, 1u);  // the tar's hardlink keeps the old inode
  EXPECT_EQ(got_both->at("/opt/agent/run-again").size, 21u);
  v = RunLazyfs({"verify", "--store", store_, "--add-tar", tar_path, both, LayoutRef("foundation")});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;

  // A different tar gives a different filesystem (UUID and hash seed follow the inputs).
  auto other = BuildLayerTar({File("etc/agent.conf", "port=2048\n")});
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(WriteFileAtomic(tar_path, *other).ok());
  const std::string c = dir_ + "/c.img";
  r = Materialize(LayoutRef("foundation"), c, {"--add-tar", tar_path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(Sidecar(c)["image"]["uuid"], side["image"]["uuid"]);
  // ... and is not taken for the one the image was made with.
  v = RunLazyfs({"verify", "--store", store_, "--add-tar", tar_path, a, LayoutRef("foundation")});
  EXPECT_NE(v.exit_code, 0) << v.out;
  EXPECT_NE(v.err.find(Sha256Of(*tar).ToString()), std::string::npos) << v.err;
}

// A hostile name in an added tar fails as it would in an image layer: one clear line, no output.
TEST_F(MaterializeTest, AddedTarWithEscapingNameFailsWithoutOutput) {
  auto tar = BuildLayerTar({File("etc/ok", "fine\n"), Raw("../escape", EntryType::kFile, "x")});
  ASSERT_TRUE(tar.ok()) << tar.status().ToString();
  const std::string tar_path = dir_ + "/evil.tar";
  ASSERT_TRUE(WriteFileAtomic(tar_path, *tar).ok());
  const std::string out = dir_ + "/evil.img";
  CommandResult r = Materialize(LayoutRef("foundation"), out, {"--add-tar", tar_path});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("../escape"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(tar_path), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const std::string& p : {out, out + ".json", out + ".verity"}) {
    EXPECT_NE(::access(p.c_str(), F_OK), 0) << p << " exists after a failed materialize";
  }

  // Added tars are held in memory: a tiny tar whose sparse entry expands to 2 GiB of holes is
  // refused at the cap (1 GiB), naming the entry, not allowed to exhaust memory.
  const std::string holes = dir_ + "/holes";
  ASSERT_EQ(RunCommand({"truncate", "-s", "2G", holes}).exit_code, 0);
  const std::string sparse = dir_ + "/sparse.tar";
  CommandResult t = RunCommand({"tar", "--sparse", "-C", dir_, "-cf", sparse, "holes"});
  ASSERT_EQ(t.exit_code, 0) << "GNU tar is needed to build a sparse tar: " << t.err;
  r = Materialize(LayoutRef("foundation"), out, {"--add-tar", sparse});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("entry \"holes\": over 1073741824 bytes"), std::string::npos) << r.err;
  EXPECT_NE(::access(out.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace lazyfs::testing
