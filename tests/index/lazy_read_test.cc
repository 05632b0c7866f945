// Range reads of file contents: checkpoints recorded while indexing, one range request per miss,
// every chunk verified, the cache's size limit and gc, failures bounded by the read deadline,
// and the whole-layer check. Blobs come from memory (MemoryBlobs counts what is read).
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "base/fd.h"
#include "base/stats.h"
#include "index/schema.h"
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

// Text-like content that compresses (so deflate blocks carry back-references into the window).
std::string Words(size_t n, uint64_t seed) {
  static const char* kWords[] = {"lazy ", "layer ", "chunk ", "window ", "inflate ", "tar\n"};
  std::string out;
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 7;
  while (out.size() < n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out += kWords[x % 6];
  }
  out.resize(n);
  return out;
}

// Each layer's tar compressed in pieces: several gzip members or zstd frames.
std::string CompressInPieces(const std::string& tar, Compression c, size_t piece) {
  std::string out;
  for (size_t i = 0; i < tar.size(); i += piece) {
    auto z = testing::Compress(std::string_view(tar).substr(i, piece), c);
    EXPECT_TRUE(z.ok());
    out += *z;
  }
  return out;
}

class LazyReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lazyfs-lazy-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    store_ = tmpl;
  }
  void TearDown() override { RemoveTree(store_).IgnoreError(); }

  IndexOptions Options(bool writable) {
    IndexOptions o;
    o.store = StoreLayout{store_};
    o.writable = writable;
    o.checkpoint_every_uncompressed = checkpoint_every_;
    o.checkpoint_every_compressed = checkpoint_every_;
    o.read_timeout = read_timeout_;
    o.cache_size_bytes = cache_size_;
    o.cache_content_while_indexing = capture_;
    o.index_threads = index_threads_;
    return o;
  }

  ImageDescriptor Add(const ImageSpec& spec, MemoryBlobs& blobs) {
    auto img = BuildImage(spec);
    EXPECT_TRUE(img.ok()) << img.status().ToString();
    blobs.AddImage(*img);
    built_ = *img;
    ImageDescriptor desc = DescriptorOf(*img);
    auto idx = Index::Open(Options(true));
    EXPECT_TRUE(idx.ok()) << idx.status().ToString();
    Status s = (*idx)->AddImage(desc, blobs, nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return desc;
  }

  struct Opened {
    std::unique_ptr<Index> index;
    std::unique_ptr<Tree> tree;
  };
  Opened Open(const ImageDescriptor& desc, BlobSource& blobs) {
    Opened o;
    auto idx = Index::Open(Options(false));
    EXPECT_TRUE(idx.ok()) << idx.status().ToString();
    o.index = std::move(*idx);
    auto tree = o.index->OpenTree(desc.manifest_digest, blobs);
    EXPECT_TRUE(tree.ok()) << tree.status().ToString();
    o.tree = std::move(*tree);
    return o;
  }

  static Result<std::string> ReadAll(const Tree& tree, const std::string& name, size_t piece) {
    LAZYFS_ASSIGN_OR_RETURN(Attr a, tree.Lookup(kRootIno, name));
    std::string out(a.size, '\0');
    for (uint64_t off = 0; off < a.size;) {
      LAZYFS_ASSIGN_OR_RETURN(
          size_t n, tree.Read(a.ino, off, std::as_writable_bytes(std::span(out)).subspan(
                                              off, std::min<uint64_t>(piece, a.size - off))));
      if (n == 0) return DataLossError("short read of " + name);
      off += n;
    }
    return out;
  }

  uint64_t checkpoint_every_ = 512 << 10;
  uint64_t cache_size_ = 0;
  bool capture_ = false;
  unsigned index_threads_ = 0;
  // Generous: a healthy read on a loaded machine (a parallel build, sanitizers) must not reach
  // it. The test of a failing fetch sets a short one.
  std::chrono::milliseconds read_timeout_{10000};
  std::string store_;
  testing::BuiltImage built_;
};

// Large random files around many small ones; one gzip layer.
ImageSpec BigAndSmall(Compression c) {
  ImageSpec spec;
  testing::Layer l;
  l.compression = c;
  for (int i = 0; i < 6; ++i) {
    l.entries.push_back(File("big" + std::to_string(i), PseudoRandomBytes(2 << 20, 100 + i)));
    for (int j = 0; j < 50; ++j) {
      l.entries.push_back(
          File("small" + std::to_string(i * 50 + j), Words(2000 + j * 37, i * 50 + j)));
    }
  }
  spec.layers = {l};
  return spec;
}

TEST_F(LazyReadTest, ASmallFileCostsOneSmallRangeRequest) {
  for (Compression c : {Compression::kGzip, Compression::kZstd, Compression::kNone}) {
    SCOPED_TRACE(static_cast<int>(c));
    TearDown();
    SetUp();
    MemoryBlobs blobs;
    ImageDescriptor desc = Add(BigAndSmall(c), blobs);
    auto o = Open(desc, blobs);
    const int opens = blobs.opens(), ranges = blobs.ranges();
    const uint64_t bytes = blobs.range_bytes();
    auto got = ReadAll(*o.tree, "small170", 1 << 20);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, Words(2000 + 20 * 37, 170));
    EXPECT_EQ(blobs.opens(), opens) << "no whole-blob download";
    // One request; single-frame zstd has no checkpoint to end at, so it grows requests.
    if (c != Compression::kZstd) {
      EXPECT_EQ(blobs.ranges(), ranges + 1);
    }
    const uint64_t fetched = blobs.range_bytes() - bytes;
    // gzip: at most the checkpoint spacing plus a deflate block or two; tar: the file itself.
    // zstd in one frame has no checkpoint: from the blob's start, the cost docs/formats.md
    // states.
    if (c == Compression::kGzip) {
      EXPECT_LT(fetched, checkpoint_every_ + (256 << 10));
    } else if (c == Compression::kNone) {
      EXPECT_EQ(fetched, got->size());
    } else {
      EXPECT_LE(fetched, desc.layers[0].size);
    }
  }
}

TEST_F(LazyReadTest, EveryFileOfEveryFormatReadsBackVerified) {
  checkpoint_every_ = 64 << 10;  // many checkpoints, so reads resume at many of them
  std::vector<testing::Entry> entries;
  for (int i = 0; i < 5; ++i) {
    entries.push_back(File("r" + std::to_string(i), PseudoRandomBytes(700000 * (i + 1), i)));
    entries.push_back(File("w" + std::to_string(i), Words(900000 * (i + 1) + 13, i)));
    entries.push_back(File("e" + std::to_string(i), ""));
  }
  auto tar = testing::BuildLayerTar(entries);
  ASSERT_TRUE(tar.ok());
  ImageSpec spec;
  for (Compression c : {Compression::kGzip, Compression::kZstd, Compression::kNone}) {
    testing::Layer plain;
    plain.entries = entries;
    plain.compression = c;
    spec.layers = {plain};
    // Multi-member gzip and multi-frame zstd: resumes cross member and frame boundaries.
    testing::Layer pieces;
    pieces.compression = c;
    if (c != Compression::kNone) pieces.raw_blob = CompressInPieces(*tar, c, 300000);
    for (const auto& layer : {plain, pieces}) {
      if (!layer.raw_blob && layer.entries.empty()) continue;
      SCOPED_TRACE(std::to_string(static_cast<int>(c)) + (layer.raw_blob ? " pieces" : ""));
      TearDown();
      SetUp();
      spec.layers = {layer};
      if (layer.raw_blob) spec.layers[0].entries.clear();
      MemoryBlobs blobs;
      ImageDescriptor desc = Add(spec, blobs);
      auto o = Open(desc, blobs);
      const int opens = blobs.opens();
      for (const auto& e : entries) {
        // Odd piece sizes: reads straddle chunk and checkpoint boundaries.
        auto got = ReadAll(*o.tree, e.path, 333333);
        ASSERT_TRUE(got.ok()) << e.path << ": " << got.status().ToString();
        EXPECT_TRUE(*got == e.data) << e.path;
      }
      EXPECT_EQ(blobs.opens(), opens);
    }
  }
}

TEST_F(LazyReadTest, ManyThreadsReadingManyFilesGetVerifiedData) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(BigAndSmall(Compression::kGzip), blobs);
  auto o = Open(desc, blobs);
  auto names = o.tree->ReadDir(kRootIno);
  ASSERT_TRUE(names.ok());
  std::atomic<int> bad{0}, done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = 0; i < names->size(); ++i) {
        const auto& e = (*names)[(i * 7 + static_cast<size_t>(t) * 13) % names->size()];
        auto got = ReadAll(*o.tree, e.name, 100000 + static_cast<size_t>(t) * 4096);
        auto want = o.tree->ContentDigest(e.ino);
        if (!got.ok() || !want.ok() || Sha256Of(*got) != *want) {
          bad++;
        } else {
          done++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(done, 12 * static_cast<int>(names->size()));
}

TEST_F(LazyReadTest, AFailingFetchEndsAtTheDeadlineAndIsNotRemembered) {
  read_timeout_ = std::chrono::milliseconds(500);
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(BigAndSmall(Compression::kGzip), blobs);
  auto o = Open(desc, blobs);
  const Digest layer = desc.layers[0].digest;
  const std::string blob = blobs.Get(layer);
  blobs.Remove(layer);
  auto got = ReadAll(*o.tree, "small3", 1 << 20);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable) << got.status().ToString();
  blobs.Add(layer, blob);
  got = ReadAll(*o.tree, "small3", 1 << 20);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Words(2000 + 3 * 37, 3));
}

TEST_F(LazyReadTest, LayersIndexedWithoutCheckpointsAreExtractedWhole) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(BigAndSmall(Compression::kGzip), blobs);
  {
    // What an older lazyfs wrote: no 'M' record for the layer.
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), store_ + "/index", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(
        db->Delete(rocksdb::WriteOptions(), schema::LazyLayerKey(desc.layers[0].digest)).ok());
  }
  auto o = Open(desc, blobs);
  const int opens = blobs.opens();
  auto got = ReadAll(*o.tree, "small7", 1 << 20);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Words(2000 + 7 * 37, 7));
  EXPECT_EQ(blobs.opens(), opens + 1);
  EXPECT_EQ(blobs.ranges(), 0);
}

TEST_F(LazyReadTest, AWritableOpenAnnouncesTheLazyContentFeature) {
  {
    auto idx = Index::Open(Options(true));
    ASSERT_TRUE(idx.ok());
  }
  {
    // A store as the previous version wrote it: no compat features.
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), store_ + "/index", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), std::string(schema::kFormatKey),
                        schema::EncodeFormatRecord(1, 0, 0, 0))
                    .ok());
  }
  {
    auto idx = Index::Open(Options(true));
    ASSERT_TRUE(idx.ok()) << idx.status().ToString();
  }
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::Options(), store_ + "/index", &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string v;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), std::string(schema::kFormatKey), &v).ok());
  EXPECT_EQ(v, schema::EncodeFormatRecord(1, schema::kCompatLazyContent, 0, 0));
}

TEST_F(LazyReadTest, AWholeLayerFetchedThroughRangesIsCheckedOnce) {
  ImageSpec spec;
  testing::Layer l;
  for (int i = 0; i < 5; ++i) l.entries.push_back(File("f" + std::to_string(i), Words(5000, i)));
  spec.layers = {l};
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(spec, blobs);
  const Digest layer = desc.layers[0].digest;
  const std::string marker = store_ + "/content/verified/" + layer.Hex();
  {
    // No checkpoint in so small a layer: the first read fetches the whole blob.
    auto o = Open(desc, blobs);
    ASSERT_TRUE(ReadAll(*o.tree, "f1", 4096).ok());
  }
  EXPECT_EQ(::access(marker.c_str(), F_OK), 0) << "no record of the passed check";

  // A registry serving other bytes that still inflate to verified chunks (the gzip header's
  // mtime changed): chunks pass, the layer as a whole does not.
  TearDown();
  SetUp();
  desc = Add(spec, blobs);
  std::string tampered = blobs.Get(layer);
  tampered[4] ^= 0x5a;
  blobs.Add(layer, tampered);
  auto o = Open(desc, blobs);
  auto first = ReadAll(*o.tree, "f1", 4096);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), StatusCode::kDataLoss) << first.status().ToString();
  EXPECT_NE(::access(marker.c_str(), F_OK), 0);
  auto next = ReadAll(*o.tree, "f2", 4096);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), StatusCode::kDataLoss) << next.status().ToString();
  EXPECT_FALSE(::access((store_ + "/content/sha256/" + Sha256Of(Words(5000, 1)).Hex()).c_str(),
                        F_OK) == 0)
      << "the bad layer's cached content was kept";
}

TEST_F(LazyReadTest, GcRemovesUnreferencedContentAndEvictsToTheLimit) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(BigAndSmall(Compression::kGzip), blobs);
  {
    auto o = Open(desc, blobs);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(ReadAll(*o.tree, "big" + std::to_string(i), 1 << 20).ok());
  }
  const std::string stray = "not from any image";
  ASSERT_TRUE(WriteFileAtomic(store_ + "/content/sha256/" + Sha256Of(stray).Hex(), stray).ok());
  cache_size_ = 3 << 20;
  auto idx = Index::Open(Options(false));
  ASSERT_TRUE(idx.ok());
  auto report = (*idx)->Gc();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_GE(report->objects_removed, 1u + 3u);  // the stray object, and 3 of the 6 MiB of chunks
  EXPECT_LE(report->bytes_kept, cache_size_);
  EXPECT_NE(::access((store_ + "/content/sha256/" + Sha256Of(stray).Hex()).c_str(), F_OK), 0);
  // Evicted content is fetched again.
  auto o = Open(desc, blobs);
  auto got = ReadAll(*o.tree, "big0", 1 << 20);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, PseudoRandomBytes(2 << 20, 100));
}

// Layers of many small files and a few multi-chunk ones, one per compression; the last layer
// replaces some files of the first, so the merged tree takes files from every layer.
ImageSpec ThreeLayers() {
  ImageSpec spec;
  const Compression kinds[] = {Compression::kGzip, Compression::kZstd, Compression::kGzip};
  for (int k = 0; k < 3; ++k) {
    testing::Layer l;
    l.compression = kinds[k];
    l.entries.push_back(File("l" + std::to_string(k) + "/big", PseudoRandomBytes(3 << 20, 7 + k)));
    for (int j = 0; j < 120; ++j) {
      l.entries.push_back(File("l" + std::to_string(k) + "/f" + std::to_string(j),
                               Words(1000 + j * 13, k * 1000 + j)));
    }
    if (k == 2) {
      for (int j = 0; j < 10; ++j) {
        l.entries.push_back(File("l0/f" + std::to_string(j), Words(500 + j, 9000 + j)));
      }
    }
    spec.layers.push_back(l);
  }
  return spec;
}

// Every regular file in the root's subdirectories, read whole.
Status ReadEveryFile(const Tree& tree, std::map<std::string, std::string>* out) {
  LAZYFS_ASSIGN_OR_RETURN(auto dirs, tree.ReadDir(kRootIno));
  for (const DirEntry& d : dirs) {
    LAZYFS_ASSIGN_OR_RETURN(auto files, tree.ReadDir(d.ino));
    for (const DirEntry& f : files) {
      LAZYFS_ASSIGN_OR_RETURN(Attr a, tree.GetAttr(f.ino));
      std::string bytes(a.size, '\0');
      LAZYFS_ASSIGN_OR_RETURN(size_t n,
                              tree.Read(f.ino, 0, std::as_writable_bytes(std::span(bytes))));
      if (n != a.size) return DataLossError("short read of " + d.name + "/" + f.name);
      (*out)[d.name + "/" + f.name] = std::move(bytes);
    }
  }
  return Status::Ok();
}

TEST_F(LazyReadTest, ContentCapturedWhileIndexingIsReadWithoutFetchingAgain) {
  capture_ = true;
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(ThreeLayers(), blobs);
  EXPECT_EQ(blobs.opens(), 3) << "indexing reads each layer once";
  auto o = Open(desc, blobs);
  std::map<std::string, std::string> got;
  Status s = ReadEveryFile(*o.tree, &got);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(got.size(), 3u * 121);
  EXPECT_EQ(got["l1/big"], PseudoRandomBytes(3 << 20, 8));
  EXPECT_EQ(got["l0/f3"], Words(503, 9003)) << "the top layer's version";
  EXPECT_EQ(got["l0/f30"], Words(1000 + 30 * 13, 30));
  EXPECT_EQ(blobs.opens(), 3) << "no layer read again";
  EXPECT_EQ(blobs.ranges(), 0) << "no range fetched";
}

TEST_F(LazyReadTest, WarmContentReadsWholeOnlyTheLayersThatMissMuch) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(ThreeLayers(), blobs);
  const int opens = blobs.opens();
  {
    // Layer 1 is mostly read already: all but two of its files.
    auto o = Open(desc, blobs);
    for (int j = 2; j < 120; ++j) {
      auto got = o.tree->Lookup(kRootIno, "l1");
      ASSERT_TRUE(got.ok());
      auto f = o.tree->Lookup(got->ino, "f" + std::to_string(j));
      ASSERT_TRUE(f.ok());
      std::string b(f->size, '\0');
      ASSERT_TRUE(o.tree->Read(f->ino, 0, std::as_writable_bytes(std::span(b))).ok());
    }
    auto l1 = o.tree->Lookup(kRootIno, "l1");
    auto big = o.tree->Lookup(l1->ino, "big");
    std::string b(big->size, '\0');
    ASSERT_TRUE(o.tree->Read(big->ino, 0, std::as_writable_bytes(std::span(b))).ok());
  }
  auto o = Open(desc, blobs);
  Status s = o.index->WarmContent(desc.manifest_digest, blobs, 3, nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(blobs.opens(), opens + 2) << "layers 0 and 2 read whole, layer 1 left to reads";
  std::map<std::string, std::string> got;
  s = ReadEveryFile(*o.tree, &got);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(got["l2/f7"], Words(1000 + 7 * 13, 2007));
  EXPECT_EQ(got["l0/f9"], Words(509, 9009));
  EXPECT_EQ(blobs.opens(), opens + 2);
  // Everything is cached now: warming again reads nothing.
  s = o.index->WarmContent(desc.manifest_digest, blobs, 3, nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(blobs.opens(), opens + 2);
}

TEST_F(LazyReadTest, WarmContentNamesTheLayerItCannotRead) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(ThreeLayers(), blobs);
  blobs.Remove(desc.layers[2].digest);
  auto o = Open(desc, blobs);
  Status s = o.index->WarmContent(desc.manifest_digest, blobs, 0, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("layer " + desc.layers[2].digest.Short()), std::string::npos)
      << s.message();
  // The other layers were stored all the same.
  auto l0 = o.tree->Lookup(kRootIno, "l0");
  auto f = o.tree->Lookup(l0->ino, "f50");
  std::string b(f->size, '\0');
  const int ranges = blobs.ranges();
  ASSERT_TRUE(o.tree->Read(f->ino, 0, std::as_writable_bytes(std::span(b))).ok());
  EXPECT_EQ(blobs.ranges(), ranges);
}

TEST_F(LazyReadTest, LayersIndexedInParallelGiveTheFirstFailureInLayerOrder) {
  ImageSpec spec = ThreeLayers();
  // Layers 1 and 2 are both bad; layer 1's error is the one reported, whichever thread ends
  // first, and nothing of the image is stored.
  spec.layers[1].entries.push_back(testing::Raw("../one"));
  spec.layers[2].entries.push_back(testing::Raw("/two"));
  auto img = BuildImage(spec);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  for (unsigned threads : {1u, 3u}) {
    SCOPED_TRACE(threads);
    index_threads_ = threads;
    MemoryBlobs blobs;
    blobs.AddImage(*img);
    auto idx = Index::Open(Options(true));
    ASSERT_TRUE(idx.ok()) << idx.status().ToString();
    Status s = (*idx)->AddImage(DescriptorOf(*img), blobs, nullptr);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("../one"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(img->layers[1].digest.Short()), std::string::npos) << s.message();
    EXPECT_FALSE(*(*idx)->HasImage(img->manifest_digest));
  }
}

}  // namespace
}  // namespace lazyfs::index

namespace lazyfs::index {
namespace {

// A cached object damaged while a tree is open (a truncated or rewritten file in
// STORE/content) is noticed by that same tree: dropped, fetched again, and served right.
TEST_F(LazyReadTest, ACacheObjectDamagedWhileOpenIsFetchedAgainByTheSameTree) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(BigAndSmall(Compression::kGzip), blobs);
  auto o = Open(desc, blobs);
  const std::string want = Words(2000 + 3 * 37, 3);
  const std::string object = store_ + "/content/sha256/" + Sha256Of(want).Hex();
  for (const char* damage : {"truncate", "rewrite"}) {
    SCOPED_TRACE(damage);
    auto got = ReadAll(*o.tree, "small3", 1 << 20);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(*got, want);
    ASSERT_EQ(::access(object.c_str(), F_OK), 0) << "not cached as a whole object";
    if (std::string(damage) == "truncate") {
      ASSERT_EQ(::truncate(object.c_str(), 100), 0);
    } else {
      std::string bad = want;
      bad[10] ^= 0x20;
      ASSERT_TRUE(WriteFileAtomic(object, bad, 0600).ok());
    }
    const uint64_t corrupt = Counter(kStatCacheCorrupt).Get(), ranges = blobs.ranges();
    got = ReadAll(*o.tree, "small3", 1 << 20);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, want);
    EXPECT_GT(blobs.ranges(), ranges) << "served from the damaged object";
    if (std::string(damage) == "rewrite") {
      EXPECT_EQ(Counter(kStatCacheCorrupt).Get(), corrupt + 1);
    }
  }
}

}  // namespace
}  // namespace lazyfs::index
