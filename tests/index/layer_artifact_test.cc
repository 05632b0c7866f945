// Layer index artifacts: export is deterministic, an imported artifact makes an empty store lazy
// at once (no blob opened), a malformed or hostile artifact is refused, and a lying one is
// caught (by a read's chunk digest, or by the whole-layer check) and refused for good.
#include <gtest/gtest.h>
#include <zstd.h>

#include "base/fd.h"
#include "index/layer_artifact.h"
#include "index/tree.h"
#include "tests/index/blob_fake.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"

namespace lazyfs::index {
namespace {

using testing::BuildImage;
using testing::Compression;
using testing::DescriptorOf;
using testing::File;
using testing::ImageSpec;
using testing::MemoryBlobs;
using testing::PseudoRandomBytes;

// Two layers: files of one chunk and of several, a directory, a symlink, a hardlink, files of
// the same content at several offsets (one location, an offset each); gzip and zstd.
ImageSpec TwoLayers() {
  ImageSpec spec;
  testing::Layer a;
  a.compression = Compression::kGzip;
  a.entries = {testing::Dir("etc"), File("etc/passwd", "root:x:0:0\n"),
               File("big", PseudoRandomBytes(3 << 20, 7)), testing::Symlink("link", "big"),
               testing::Hardlink("etc/again", "etc/passwd"),
               File("etc/passwd-", "root:x:0:0\n"), File("copy/big", PseudoRandomBytes(3 << 20, 7))};
  for (int i = 0; i < 40; ++i) {
    a.entries.push_back(File("small" + std::to_string(i), PseudoRandomBytes(5000 + i, i)));
  }
  testing::Layer b;
  b.compression = Compression::kZstd;
  b.entries = {File("bin/sh", PseudoRandomBytes(1500000, 9), 0755),
               File("etc/hosts", "127.0.0.1 localhost\n")};
  spec.layers = {a, b};
  return spec;
}

class LayerArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (std::string* dir : {&store_a_, &store_b_}) {
      char tmpl[] = "/tmp/lazyfs-artifact-test-XXXXXX";
      ASSERT_NE(mkdtemp(tmpl), nullptr);
      *dir = tmpl;
    }
    auto img = BuildImage(TwoLayers());
    ASSERT_TRUE(img.ok()) << img.status().ToString();
    built_ = *img;
    desc_ = DescriptorOf(built_);
  }
  void TearDown() override {
    RemoveTree(store_a_).IgnoreError();
    RemoveTree(store_b_).IgnoreError();
  }

  IndexOptions Options(const std::string& store, bool writable) {
    IndexOptions o;
    o.store = StoreLayout{store};
    o.writable = writable;
    o.checkpoint_every_uncompressed = 256 << 10;
    o.checkpoint_every_compressed = 256 << 10;
    o.read_timeout = std::chrono::milliseconds(2000);
    return o;
  }
  std::unique_ptr<Index> OpenIndex(const std::string& store, bool writable) {
    auto idx = Index::Open(Options(store, writable));
    EXPECT_TRUE(idx.ok()) << idx.status().ToString();
    return idx.ok() ? std::move(*idx) : nullptr;
  }

  // Each layer's artifact, from a store that indexed the image from its blobs.
  std::vector<std::string> Exported(const std::string& store) {
    MemoryBlobs blobs;
    blobs.AddImage(built_);
    auto idx = OpenIndex(store, true);
    Status s = idx->AddImage(desc_, blobs, nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
    std::vector<std::string> out;
    for (const LayerDescriptor& l : desc_.layers) {
      auto blob = idx->ExportLayer(l);
      EXPECT_TRUE(blob.ok()) << blob.status().ToString();
      out.push_back(blob.ok() ? *blob : "");
    }
    return out;
  }

  // An artifact decoded, changed by `edit`, and encoded again.
  std::string Edited(size_t layer, const std::string& blob,
                     const std::function<void(LayerArtifact&)>& edit) {
    auto art = DecodeLayerArtifact(desc_.layers[layer], blob, Options(store_a_, false));
    EXPECT_TRUE(art.ok()) << art.status().ToString();
    edit(*art);
    auto out = EncodeLayerArtifact(desc_.layers[layer], *art);
    EXPECT_TRUE(out.ok());
    return *out;
  }

  // Imports `artifacts` into the empty store B and merges the image there.
  void ImportIntoB(const std::vector<std::string>& artifacts, MemoryBlobs& blobs) {
    auto idx = OpenIndex(store_b_, true);
    for (size_t i = 0; i < artifacts.size(); ++i) {
      Status s = idx->ImportLayer(desc_.layers[i], artifacts[i]);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    Status s = idx->AddImage(desc_, blobs, nullptr);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  static Result<std::string> ReadFile(const Tree& tree, const std::string& path) {
    uint64_t ino = kRootIno;
    for (size_t at = 0; at < path.size();) {
      const size_t slash = std::min(path.find('/', at), path.size());
      LAZYFS_ASSIGN_OR_RETURN(Attr a, tree.Lookup(ino, path.substr(at, slash - at)));
      ino = a.ino;
      at = slash + 1;
    }
    LAZYFS_ASSIGN_OR_RETURN(Attr a, tree.GetAttr(ino));
    std::string out(a.size, '\0');
    for (uint64_t off = 0; off < a.size;) {
      LAZYFS_ASSIGN_OR_RETURN(size_t n, tree.Read(ino, off, std::as_writable_bytes(
                                                               std::span(out).subspan(off))));
      if (n == 0) return DataLossError("short read");
      off += n;
    }
    return out;
  }

  std::string store_a_, store_b_;
  testing::BuiltImage built_;
  ImageDescriptor desc_;
};

TEST_F(LayerArtifactTest, ExportIsTheSameBytesFromTwoStoresIndexedApart) {
  const std::vector<std::string> a = Exported(store_a_);
  const std::vector<std::string> b = Exported(store_b_);
  ASSERT_EQ(a.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_FALSE(a[i].empty());
    EXPECT_TRUE(a[i] == b[i]) << "layer " << i;
  }
  EXPECT_NE(a[0], a[1]);
  // A layer this store never indexed has no artifact.
  auto idx = OpenIndex(store_a_, false);
  LayerDescriptor other = desc_.layers[0];
  other.digest = Sha256Of("not a layer");
  EXPECT_EQ(idx->ExportLayer(other).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(LayerArtifactTest, AnImportedImageMergesAndReadsWithoutOpeningABlob) {
  const std::vector<std::string> artifacts = Exported(store_a_);
  MemoryBlobs blobs;
  blobs.AddImage(built_);
  ImportIntoB(artifacts, blobs);
  EXPECT_EQ(blobs.opens(), 0) << "the merge read a layer blob";
  EXPECT_EQ(blobs.ranges(), 0);
  auto idx = OpenIndex(store_b_, false);
  auto tree = idx->OpenTree(desc_.manifest_digest, blobs);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  const ImageSpec spec = TwoLayers();
  for (const testing::Layer& l : spec.layers) {
    for (const testing::Entry& e : l.entries) {
      if (e.type != testing::EntryType::kFile) continue;
      auto got = ReadFile(**tree, e.path);
      ASSERT_TRUE(got.ok()) << e.path << ": " << got.status().ToString();
      EXPECT_TRUE(*got == e.data) << e.path;
    }
  }
  EXPECT_EQ(blobs.opens(), 0) << "a read opened a whole blob";
  EXPECT_GT(blobs.ranges(), 0);
  // Importing again, into a store that holds the layer now, changes nothing.
  auto w = OpenIndex(store_b_, true);
  EXPECT_TRUE(w->ImportLayer(desc_.layers[0], "garbage").ok());
}

TEST_F(LayerArtifactTest, AMalformedOrHostileArtifactIsRefused) {
  const std::vector<std::string> artifacts = Exported(store_a_);
  const std::string& good = artifacts[0];
  // A bomb: 64 MiB of zeros, with its size declared in the frame and without.
  const std::string zeros(64 << 20, '\0');
  std::string declared(ZSTD_compressBound(zeros.size()), '\0');
  declared.resize(ZSTD_compress(declared.data(), declared.size(), zeros.data(), zeros.size(), 1));
  std::string undeclared(ZSTD_compressBound(zeros.size()), '\0');
  {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
    ZSTD_outBuffer out{undeclared.data(), undeclared.size(), 0};
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    ASSERT_EQ(ZSTD_compressStream2(c, &out, &in, ZSTD_e_end), 0u);
    undeclared.resize(out.pos);
    ZSTD_freeCCtx(c);
  }
  struct Case {
    std::string name;
    size_t layer;
    std::string blob;
    StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"another layer's artifact", 1, good, StatusCode::kInvalidArgument, "it indexes layer"},
      {"truncated", 0, good.substr(0, good.size() / 2), StatusCode::kInvalidArgument, "truncated"},
      {"not zstd", 0, "hello", StatusCode::kInvalidArgument, "not a zstd frame"},
      {"bomb, size declared", 0, declared, StatusCode::kResourceExhausted, "more than"},
      {"bomb, size not declared", 0, undeclared, StatusCode::kResourceExhausted, "more than"},
      {"a file out of bounds", 0,
       Edited(0, good, [](LayerArtifact& a) { a.locations[0].offset = a.record.uncompressed; }),
       StatusCode::kInvalidArgument, "outside the layer"},
      {"a checkpoint out of bounds", 0,
       Edited(0, good, [&](LayerArtifact& a) {
         a.checkpoints.back().compressed = desc_.layers[0].size + 10;
       }),
       StatusCode::kInvalidArgument, "checkpoint"},
      {"a name with ..", 0,
       Edited(0, good, [](LayerArtifact& a) { a.entries[1].path = "../etc/passwd"; }),
       StatusCode::kInvalidArgument, "escapes the root"},
      {"a name not normalised", 0,
       Edited(0, good, [](LayerArtifact& a) { a.entries[1].path = "etc//passwd"; }),
       StatusCode::kInvalidArgument, "not a normalised name"},
      {"an entry count not the layer's", 0,
       Edited(0, good, [](LayerArtifact& a) { a.entries.pop_back(); }),
       StatusCode::kInvalidArgument, "entry count"},
  };
  ASSERT_FALSE(cases[6].blob.empty());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto idx = OpenIndex(store_b_, true);
    Status s = idx->ImportLayer(desc_.layers[c.layer], c.blob);
    EXPECT_EQ(s.code(), c.code) << s.ToString();
    EXPECT_NE(s.message().find(c.message), std::string::npos) << s.ToString();
    // Nothing was written: merging the image still needs the layer blobs.
    MemoryBlobs none;
    EXPECT_FALSE(idx->AddImage(desc_, none, nullptr).ok());
  }
}

TEST_F(LayerArtifactTest, ALyingChunkDigestIsCaughtByAReadAndTheLayerRefusedForGood) {
  std::vector<std::string> artifacts = Exported(store_a_);
  // "big" (3 MiB) is the one file of layer 0 with several chunks: its second chunk lies.
  artifacts[0] = Edited(0, artifacts[0], [](LayerArtifact& a) {
    for (FileLocation& l : a.locations) {
      if (l.chunks.size() > 1) l.chunks[1] = Sha256Of("a lie");
    }
  });
  MemoryBlobs blobs;
  blobs.AddImage(built_);
  ImportIntoB(artifacts, blobs);
  const std::string artifact = Sha256Of(artifacts[0]).ToString();
  {
    auto idx = OpenIndex(store_b_, false);
    auto tree = idx->OpenTree(desc_.manifest_digest, blobs);
    ASSERT_TRUE(tree.ok());
    auto got = ReadFile(**tree, "big");
    ASSERT_EQ(got.status().code(), StatusCode::kDataLoss) << got.status().ToString();
    EXPECT_NE(got.status().message().find("index artifact " + artifact), std::string::npos)
        << got.status().ToString();
    // Every file of the layer is refused now, an honest one too; the other layer reads.
    auto passwd = ReadFile(**tree, "etc/passwd");
    EXPECT_EQ(passwd.status().code(), StatusCode::kDataLoss);
    EXPECT_TRUE(ReadFile(**tree, "etc/hosts").ok());
  }
  // And in another process (a new Index over the same store).
  {
    auto idx = OpenIndex(store_b_, false);
    auto tree = idx->OpenTree(desc_.manifest_digest, blobs);
    ASSERT_TRUE(tree.ok());
    auto passwd = ReadFile(**tree, "etc/passwd");
    ASSERT_EQ(passwd.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(passwd.status().message().find("index artifact " + artifact + " of layer"),
              std::string::npos)
        << passwd.status().ToString();
  }
  // rmi + gc forget the verdict with the layer: the layer indexed again reads.
  {
    auto idx = OpenIndex(store_b_, true);
    ASSERT_TRUE(idx->RemoveImage(desc_.manifest_digest).ok());
    ASSERT_TRUE(idx->Gc().ok());
    ASSERT_TRUE(idx->AddImage(desc_, blobs, nullptr).ok());
    auto tree = idx->OpenTree(desc_.manifest_digest, blobs);
    ASSERT_TRUE(tree.ok());
    auto big = ReadFile(**tree, "big");
    ASSERT_TRUE(big.ok()) << big.status().ToString();
    EXPECT_TRUE(*big == PseudoRandomBytes(3 << 20, 7));
  }
}

TEST_F(LayerArtifactTest, ALyingEntryIsCaughtByTheWholeLayerCheck) {
  std::vector<std::string> artifacts = Exported(store_a_);
  // bin/sh claims to be setuid.
  artifacts[1] = Edited(1, artifacts[1], [](LayerArtifact& a) {
    for (LayerEntry& e : a.entries) {
      if (e.path == "bin/sh") e.mode |= 04000;
    }
  });
  MemoryBlobs blobs;
  blobs.AddImage(built_);
  ImportIntoB(artifacts, blobs);
  auto idx = OpenIndex(store_b_, true);
  {
    auto tree = idx->OpenTree(desc_.manifest_digest, blobs);
    ASSERT_TRUE(tree.ok());
    // A claim until the layer is checked whole (a read of the whole layer would check it).
    auto sh = (*tree)->Lookup((*tree)->Lookup(kRootIno, "bin")->ino, "sh");
    ASSERT_TRUE(sh.ok());
    EXPECT_EQ(sh->mode & 07777, 04755u);
  }
  // Not exported again while it is a claim.
  EXPECT_EQ(idx->ExportLayer(desc_.layers[1]).status().code(), StatusCode::kFailedPrecondition);
  // What materialize runs first: every artifact layer checked whole against its tar stream.
  Status s = idx->WarmContent(desc_.manifest_digest, blobs, 1, nullptr);
  ASSERT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("index artifact " + Sha256Of(artifacts[1]).ToString()),
            std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("mode 0755 in the tar stream, 04755 in the artifact"),
            std::string::npos)
      << s.ToString();
  auto tree = OpenIndex(store_b_, false)->OpenTree(desc_.manifest_digest, blobs);
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ(ReadFile(**tree, "etc/hosts").status().code(), StatusCode::kDataLoss);
}

TEST_F(LayerArtifactTest, AnHonestArtifactPassesTheCheckAndBecomesTheLayersOwnIndex) {
  const std::vector<std::string> artifacts = Exported(store_a_);
  MemoryBlobs blobs;
  blobs.AddImage(built_);
  ImportIntoB(artifacts, blobs);
  auto idx = OpenIndex(store_b_, true);
  EXPECT_EQ(idx->ExportLayer(desc_.layers[0]).status().code(), StatusCode::kFailedPrecondition);
  Status s = idx->WarmContent(desc_.manifest_digest, blobs, 1, nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  // Checked: the provenance record is gone and the layer exports as its own.
  for (size_t i = 0; i < artifacts.size(); ++i) {
    auto again = idx->ExportLayer(desc_.layers[i]);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_TRUE(*again == artifacts[i]);
  }
}

}  // namespace
}  // namespace lazyfs::index
