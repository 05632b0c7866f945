// WithLayerTars: tars applied over an indexed image's tree must give exactly the tree the image
// would have with those tars as more layers (the builder's independent oracle, ExpectedListing),
// content included, and refuse what an image layer is refused for. WithAdditions' files: one more
// layer that replaces files, makes parents, keeps the numbers of the tree below and refuses a
// directory in the way.
#include "index/layer_overlay.h"

#include <gtest/gtest.h>

#include "base/fd.h"
#include "index/tree.h"
#include "tests/index/blob_fake.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"

namespace lazyfs::index {
namespace {

using namespace lazyfs::testing;  // the builder's Entry helpers

class LayerOverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lazyfs-overlay-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    IndexOptions o;
    o.store = StoreLayout{dir_ + "/store"};
    o.writable = true;
    auto idx = Index::Open(o);
    ASSERT_TRUE(idx.ok()) << idx.status().ToString();
    idx_ = std::move(*idx);
    auto img = BuildImage(FoundationSpec());
    ASSERT_TRUE(img.ok()) << img.status().ToString();
    blobs_.AddImage(*img);
    const ImageDescriptor desc = DescriptorOf(*img);
    ASSERT_TRUE(idx_->AddImage(desc, blobs_, nullptr).ok());
    auto tree = idx_->OpenTree(desc.manifest_digest, blobs_);
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    base_ = std::move(*tree);
  }
  void TearDown() override {
    base_.reset();
    idx_.reset();
    RemoveTree(dir_).IgnoreError();
  }

  // Writes a layer's tar (compressed as the layer says) and returns its path.
  std::string WriteTar(const Layer& layer, const std::string& name) {
    auto tar = BuildLayerTar(layer.entries, layer.format);
    EXPECT_TRUE(tar.ok()) << tar.status().ToString();
    auto blob = Compress(tar.ok() ? *tar : "", layer.compression);
    EXPECT_TRUE(blob.ok());
    const std::string path = dir_ + "/" + name;
    EXPECT_TRUE(WriteFileAtomic(path, blob.ok() ? *blob : "").ok());
    return path;
  }

  std::string dir_;
  MemoryBlobs blobs_;
  std::unique_ptr<Index> idx_;
  std::unique_ptr<Tree> base_;
};

TEST_F(LayerOverlayTest, TwoTarsMergeAsTwoMoreLayers) {
  Layer t1;
  t1.compression = Compression::kNone;
  Entry conf = File("etc/agent.conf", "port=1\n", 0640, 7, 8);
  conf.xattrs["user.origin"] = "tar one";
  t1.entries = {conf,
                Dir("opt/agent", 0750, 1000, 1000),
                File("opt/agent/run", "#!/bin/sh\n", 0755),
                Hardlink("opt/tool-too", "usr/bin/tool"),  // to an image file
                Symlink("opt/agent/cfg", "/etc/agent.conf"),
                BlockDev("dev/agent", 8, 1, 0600),
                Whiteout("etc/passwd"),
                Opaque("var/lib/old"),
                File("var/lib/old/new", "only me\n")};
  Layer t2;
  t2.compression = Compression::kGzip;
  t2.entries = {Whiteout("opt/agent/run"), File("opt/agent", "a file over tar one's dir\n"),
                File("etc/agent.conf", "port=2\n"), Fifo("run/agent")};
  std::vector<AddedTar> tars = {{WriteTar(t1, "one.tar"), {}}, {WriteTar(t2, "two.tar.gz"), {}}};
  auto tree = WithLayerTars(*base_, tars, LayerReadOptions{});
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();

  ImageSpec spec = FoundationSpec();
  spec.layers.push_back(t1);
  spec.layers.push_back(t2);
  auto want = ExpectedListing(spec);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  auto got = ListTree(**tree);  // reads every file: base content and tar content
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(DiffListings(*want, *got), "");
  // Spot checks, in case the oracle and the merge share a misreading.
  EXPECT_FALSE(got->count("/etc/passwd"));
  EXPECT_FALSE(got->count("/var/lib/old/c"));
  EXPECT_EQ(got->at("/opt/agent").type, 'f');
  EXPECT_EQ(got->at("/usr/bin/tool").nlink, 4u);  // the image's three names and the tar's
  EXPECT_EQ(got->at("/etc/agent.conf").size, 7u);
  EXPECT_EQ((*tree)->Stats().inodes, got->size() - 3);

  auto raw = BuildLayerTar(t1.entries, t1.format);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(tars[0].sha256, Sha256Of(*raw));  // the tar's own digest
}

TEST_F(LayerOverlayTest, BadTarsFailNamingTheTarAndTheEntry) {
  Layer escape;
  escape.compression = Compression::kNone;
  escape.entries = {File("ok", "x"), Raw("a/../../etc/shadow", EntryType::kFile, "x")};
  std::vector<AddedTar> tars = {{WriteTar(escape, "escape.tar"), {}}};
  auto tree = WithLayerTars(*base_, tars, LayerReadOptions{});
  ASSERT_FALSE(tree.ok());
  EXPECT_EQ(tree.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tree.status().message().find("escape.tar"), std::string::npos)
      << tree.status().ToString();
  EXPECT_NE(tree.status().message().find("a/../../etc/shadow"), std::string::npos);

  Layer dangling;
  dangling.compression = Compression::kNone;
  dangling.entries = {Hardlink("bin/x", "no/such/file")};
  tars = {{WriteTar(dangling, "dangling.tar"), {}}};
  tree = WithLayerTars(*base_, tars, LayerReadOptions{});
  ASSERT_FALSE(tree.ok());
  EXPECT_NE(tree.status().message().find("no/such/file"), std::string::npos)
      << tree.status().ToString();

  tars = {{dir_ + "/missing.tar", {}}};
  tree = WithLayerTars(*base_, tars, LayerReadOptions{});
  ASSERT_FALSE(tree.ok());
  EXPECT_NE(tree.status().message().find("missing.tar"), std::string::npos)
      << tree.status().ToString();
}

TEST_F(LayerOverlayTest, AddedFilesAreOneMoreLayerKeepingTheNumbersBelow) {
  TreeAdditions adds;
  adds.files_mtime = 1234;
  AddedFile tool;  // one of /usr/bin/tool's three names
  tool.guest_path = "/usr/bin/tool-link";
  tool.content = "replaced\n";
  tool.mode = 0700;
  AddedFile agent;
  agent.guest_path = "/opt/agent/bin/agent";
  agent.content = "#!/bin/sh\n";
  agent.uid = 5;
  adds.files = {tool, agent};
  auto tree = WithAdditions(*base_, adds);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();

  auto want = ListTree(*base_);
  ASSERT_TRUE(want.ok());
  auto got = ListTree(**tree);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->at("/usr/bin/tool").nlink, want->at("/usr/bin/tool").nlink - 1);
  EXPECT_EQ(got->at("/usr/bin/tool-link").sha256, Sha256Of("replaced\n").Hex());
  EXPECT_EQ(got->at("/usr/bin/tool-link").mode, 0700u);
  EXPECT_EQ(got->at("/opt/agent").mode, 0755u);
  EXPECT_EQ(got->at("/opt/agent").mtime_sec, 1234);
  EXPECT_EQ(got->at("/opt/agent/bin/agent").uid, 5u);
  EXPECT_EQ(got->at("/opt").nlink, want->at("/opt").nlink + 1);
  for (const char* p : {"/usr/bin/tool", "/usr/bin/tool-link", "/usr/bin/tool-again", "/opt",
                        "/opt/agent", "/opt/agent/bin", "/opt/agent/bin/agent"}) {
    got->erase(p);
    want->erase(p);
  }
  EXPECT_EQ(DiffListings(*want, *got), "");

  // The tree below keeps its numbers; the four new inodes come after them, in order.
  const uint64_t n = base_->Stats().inodes;
  EXPECT_EQ((*tree)->Stats().inodes, n + 4);
  for (uint64_t ino = 1; ino <= n; ++ino) {
    auto before = base_->GetAttr(ino);
    auto after = (*tree)->GetAttr(ino);
    ASSERT_TRUE(before.ok());
    if (after.ok()) {
      EXPECT_EQ(after->mode, before->mode) << "inode " << ino;
    }
  }
  auto opt = (*tree)->Lookup(kRootIno, "opt");
  ASSERT_TRUE(opt.ok());
  auto made = (*tree)->Lookup(opt->ino, "agent");
  ASSERT_TRUE(made.ok());
  EXPECT_EQ(made->ino, n + 2);

  // Known only by digest: comparable, not readable.
  AddedFile known;
  known.guest_path = "/etc/key";
  known.digest = Sha256Of("secret");
  known.size = 6;
  adds.files = {known};
  tree = WithAdditions(*base_, adds);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto etc = (*tree)->Lookup(kRootIno, "etc");
  auto key = (*tree)->Lookup(etc->ino, "key");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->size, 6u);
  EXPECT_EQ(*(*tree)->ContentDigest(key->ino), Sha256Of("secret"));
  std::vector<std::byte> buf(8);
  EXPECT_EQ((*tree)->Read(key->ino, 0, buf).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(LayerOverlayTest, AddedFilesRefuseADirectoryInTheWay) {
  struct Case {
    std::vector<std::string> paths;
    std::string error;
  };
  for (const Case& c :
       std::vector<Case>{{{"/etc"}, "guest path \"/etc\" is a directory in the image"},
                         {{"/etc/passwd/x"},
                          "guest path \"/etc/passwd/x\": passwd is not a directory in the image"},
                         {{"/new/f", "/new"}, "guest path \"/new\" is a directory in the image"},
                         {{"/f", "/f/g"}, "guest path \"/f/g\": f is not a directory in the image"},
                         {{"relative"}, "guest path \"relative\" must be an absolute file path"},
                         {{"/a/../b"}, "guest path \"/a/../b\" has a bad component"}}) {
    TreeAdditions adds;
    for (const std::string& p : c.paths) {
      AddedFile f;
      f.guest_path = p;
      f.content = "x";
      adds.files.push_back(std::move(f));
    }
    auto tree = WithAdditions(*base_, adds);
    ASSERT_FALSE(tree.ok()) << c.error;
    EXPECT_EQ(tree.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tree.status().message(), c.error);
  }
}

}  // namespace
}  // namespace lazyfs::index
