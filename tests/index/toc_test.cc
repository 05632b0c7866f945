// eStargz and zstd:chunked layers written by the estargz Go package (tests/support/mkstargz):
// footers and TOCs parsed, images indexed from TOCs with range requests only, listings equal to
// those of the same tars, chunks fetched one run per read and verified, a TOC that does not
// match its annotation refused, a corrupt chunk never served, prefetch by landmark and of
// everything, and the whole-layer check once every byte is in. Blobs come from memory.
#include "index/toc.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "base/fd.h"
#include "index/tree.h"
#include "tests/index/blob_fake.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"
#include "tests/support/mkstargz.h"

namespace lazyfs::index {
namespace {

using testing::BuildImage;
using testing::Compression;
using testing::File;
using testing::ImageSpec;
using testing::MemoryBlobs;
using testing::PseudoRandomBytes;
using testing::StargzFormat;
using testing::StargzLayer;

const StargzFormat kFormats[] = {StargzFormat::kEstargz, StargzFormat::kZstdChunked};

std::string Text(size_t n, int seed) {
  std::string s;
  while (s.size() < n) s += "line " + std::to_string(seed) + " " + std::to_string(s.size()) + "\n";
  s.resize(n);
  return s;
}

// A layer with every entry type, a multi-chunk file (64 KiB chunks) and xattrs.
std::vector<testing::Entry> RichEntries() {
  return {testing::Dir("etc", 0755, 0, 0),
          File("etc/hosts", "127.0.0.1 localhost\n", 0644, 0, 0),
          File("etc/passwd", Text(3000, 1), 0600, 12, 34),
          File("etc/empty", "", 0644),
          testing::Symlink("etc/link", "hosts"),
          testing::Hardlink("etc/hard", "etc/passwd"),
          File("bin/big", PseudoRandomBytes(300'000, 7), 04755),
          File("bin/text", Text(200'000, 2), 0755),
          testing::CharDev("dev/null", 1, 3, 0666),
          testing::BlockDev("dev/sda", 8, 0, 0660),
          testing::Fifo("run/fifo", 0600),
          [] {
            auto e = File("etc/caps", "x", 0644);
            e.xattrs = {{"user.comment", std::string("a\0b", 3)}, {"security.capability", "cap"}};
            return e;
          }()};
}

// The layer of an image spec, as a blob written by mkstargz with its TOC annotation.
testing::Layer StargzLayerOf(const std::vector<testing::Entry>& entries, StargzFormat format,
                             StargzLayer* out = nullptr, const std::string& prioritized = "",
                             const std::string& toc_lie = "") {
  auto tar = testing::BuildLayerTar(entries);
  EXPECT_TRUE(tar.ok()) << tar.status().ToString();
  auto z = testing::MakeStargz(*tar, format, prioritized, toc_lie);
  EXPECT_TRUE(z.ok()) << z.status().ToString();
  testing::Layer l;
  l.entries = entries;
  l.compression = format == StargzFormat::kEstargz ? Compression::kGzip : Compression::kZstd;
  l.raw_blob = z->blob;
  l.diff_id = z->diff_id;
  l.annotations[std::string(kTocDigestAnnotation)] = z->toc_digest.ToString();
  if (out) *out = *z;
  return l;
}

class TocTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tool = testing::MkstargzBinary();
    ASSERT_TRUE(tool.ok()) << tool.status().ToString();
    char tmpl[] = "/tmp/lazyfs-toc-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    store_ = tmpl;
  }
  void TearDown() override { RemoveTree(store_).IgnoreError(); }

  IndexOptions Options(bool writable) {
    IndexOptions o;
    o.store = StoreLayout{store_};
    o.writable = writable;
    o.read_timeout = std::chrono::milliseconds(2000);
    o.prefetch = prefetch_;
    if (small_expansion_cap_) {
      o.max_expansion = 4;
      o.min_expansion_cap = 1 << 20;
    }
    return o;
  }

  // Builds, indexes and opens an image; `blobs_` then holds its blobs.
  std::unique_ptr<Tree> Open(const ImageSpec& spec) {
    auto img = BuildImage(spec);
    EXPECT_TRUE(img.ok()) << img.status().ToString();
    if (!img.ok()) return nullptr;
    blobs_.AddImage(*img);
    desc_ = testing::DescriptorOf(*img);
    for (size_t i = 0; i < spec.layers.size(); ++i)
      desc_.layers[i].annotations = spec.layers[i].annotations;
    {
      auto idx = Index::Open(Options(true));
      EXPECT_TRUE(idx.ok()) << idx.status().ToString();
      Status s = (*idx)->AddImage(desc_, blobs_, nullptr);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok()) return nullptr;
    }
    auto idx = Index::Open(Options(false));
    EXPECT_TRUE(idx.ok()) << idx.status().ToString();
    index_ = std::move(*idx);
    auto tree = index_->OpenTree(desc_.manifest_digest, blobs_);
    EXPECT_TRUE(tree.ok()) << tree.status().ToString();
    return tree.ok() ? std::move(*tree) : nullptr;
  }

  std::string ReadAll(const Tree& tree, const std::string& path, bool expect_ok = true) {
    uint64_t ino = kRootIno;
    size_t pos = 0;
    while (pos < path.size()) {
      const size_t slash = path.find('/', pos);
      const std::string name =
          path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      auto a = tree.Lookup(ino, name);
      EXPECT_TRUE(a.ok()) << path << ": " << a.status().ToString();
      if (!a.ok()) return "";
      ino = a->ino;
      pos = slash == std::string::npos ? path.size() : slash + 1;
    }
    auto attr = tree.GetAttr(ino);
    std::string out(attr->size, '\0');
    auto n = tree.Read(ino, 0, std::as_writable_bytes(std::span(out)));
    if (expect_ok) {
      EXPECT_TRUE(n.ok()) << path << ": " << n.status().ToString();
    }
    last_read_ = n.ok() ? Status::Ok() : n.status();
    return out;
  }

  bool Cached(const Digest& d) {
    return ::access((store_ + "/content/sha256/" + d.Hex()).c_str(), F_OK) == 0;
  }

  std::string store_;
  MemoryBlobs blobs_;
  ImageDescriptor desc_;
  std::unique_ptr<Index> index_;
  PrefetchMode prefetch_ = PrefetchMode::kNone;
  bool small_expansion_cap_ = false;
  Status last_read_;
};

TEST_F(TocTest, FootersAndTocsOfBothFormatsParse) {
  auto tar = testing::BuildLayerTar(RichEntries());
  ASSERT_TRUE(tar.ok());
  for (StargzFormat f : kFormats) {
    SCOPED_TRACE(f == StargzFormat::kEstargz ? "estargz" : "zstd:chunked");
    auto z = testing::MakeStargz(*tar, f);
    ASSERT_TRUE(z.ok()) << z.status().ToString();
    const LayerCompression comp =
        f == StargzFormat::kEstargz ? LayerCompression::kGzip : LayerCompression::kZstd;
    auto footer = ParseTocFooter(
        comp, std::string_view(z->blob).substr(z->blob.size() - kTocTailSize), z->blob.size());
    ASSERT_TRUE(footer.ok()) << footer.status().ToString();
    EXPECT_EQ(footer->format,
              f == StargzFormat::kEstargz ? TocFormat::kEstargz : TocFormat::kZstdChunked);
    auto json = DecompressToc(
        *footer, std::string_view(z->blob).substr(footer->toc_offset, footer->toc_size),
        TocLimits{});
    ASSERT_TRUE(json.ok()) << json.status().ToString();
    EXPECT_EQ(Sha256Of(*json), z->toc_digest);
    auto toc = ParseToc(*json, *footer, TocLimits{});
    ASSERT_TRUE(toc.ok()) << toc.status().ToString();
    // Entries as the tar has them (the landmark left out), chunks covering every file.
    size_t files = 0;
    for (const LayerEntry& e : toc->entries) {
      EXPECT_NE(e.path, ".no.prefetch.landmark");
      if (e.kind != EntryKind::kFile || e.size == 0) continue;
      ++files;
      auto it = toc->files.find(e.digest);
      ASSERT_NE(it, toc->files.end()) << e.path;
      uint64_t covered = 0;
      for (const TocChunk& c : it->second) {
        EXPECT_EQ(c.offset, covered);
        EXPECT_LT(c.compressed_offset, c.compressed_end);
        EXPECT_LE(c.compressed_end, footer->payload_end);
        covered += c.size;
      }
      EXPECT_EQ(covered, e.size) << e.path;
    }
    EXPECT_EQ(files, 5u);
    EXPECT_EQ(toc->files.at(Sha256Of(PseudoRandomBytes(300'000, 7))).size(), 5u);  // 64 KiB chunks
    EXPECT_TRUE(toc->prefetch.empty());
    // Not a footer: refused with a message.
    std::string bad = z->blob;
    bad[bad.size() - 10] ^= 0x55;
    bad[bad.size() - 30] ^= 0x55;
    auto nf =
        ParseTocFooter(comp, std::string_view(bad).substr(bad.size() - kTocTailSize), bad.size());
    EXPECT_FALSE(nf.ok());
  }
}

TEST_F(TocTest, IndexesFromTheTocAloneAndListsLikeTheTar) {
  for (StargzFormat f : kFormats) {
    SCOPED_TRACE(f == StargzFormat::kEstargz ? "estargz" : "zstd:chunked");
    ImageSpec spec;
    // Lower eStargz/zstd:chunked layer; upper layer of the other format with a whiteout and an
    // opaque directory, so the merge sees TOC entries of both kinds.
    const StargzFormat other =
        f == StargzFormat::kEstargz ? StargzFormat::kZstdChunked : StargzFormat::kEstargz;
    spec.layers.push_back(StargzLayerOf(RichEntries(), f));
    spec.layers.push_back(
        StargzLayerOf({testing::Whiteout("etc/hosts"), testing::Opaque("dev"),
                       File("dev/new", "new\n"), File("etc/added", Text(70'000, 3))},
                      other));
    const int ranges = blobs_.ranges();
    auto tree = Open(spec);
    ASSERT_NE(tree, nullptr);
    EXPECT_EQ(blobs_.opens(), 0) << "a layer was downloaded to index it";
    EXPECT_EQ(blobs_.ranges() - ranges, 4) << "footer and TOC of each layer";
    auto want = testing::ExpectedListing([&] {
      ImageSpec plain = spec;
      for (auto& l : plain.layers) {
        l.raw_blob.reset();
        l.annotations.clear();
        l.diff_id.reset();
      }
      return plain;
    }());
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    auto got = testing::ListTree(*tree);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(testing::DiffListings(*want, *got), "");
    tree.reset();
    index_.reset();
    RemoveTree(store_).IgnoreError();
    ASSERT_EQ(::mkdir(store_.c_str(), 0700), 0);
  }
}

TEST_F(TocTest, ASmallReadFetchesItsChunksInOneRequest) {
  for (StargzFormat f : kFormats) {
    SCOPED_TRACE(f == StargzFormat::kEstargz ? "estargz" : "zstd:chunked");
    ImageSpec spec;
    StargzLayer z;
    spec.layers.push_back(StargzLayerOf(RichEntries(), f, &z));
    auto tree = Open(spec);
    ASSERT_NE(tree, nullptr);
    const int before = blobs_.ranges();
    const uint64_t bytes_before = blobs_.range_bytes();
    EXPECT_EQ(ReadAll(*tree, "etc/passwd"), Text(3000, 1));
    EXPECT_EQ(blobs_.ranges() - before, 1);
    EXPECT_LT(blobs_.range_bytes() - bytes_before, 4096u);
    // 100 KiB from the middle of a 300 KB file: the two or three chunks under it, one request.
    auto a = tree->Lookup(kRootIno, "bin");
    auto big = tree->Lookup(a->ino, "big");
    std::string piece(100'000, '\0');
    const int before2 = blobs_.ranges();
    auto n = tree->Read(big->ino, 100'000, std::as_writable_bytes(std::span(piece)));
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(piece, PseudoRandomBytes(300'000, 7).substr(100'000, 100'000));
    EXPECT_EQ(blobs_.ranges() - before2, 1);
    EXPECT_LT(blobs_.range_bytes() - bytes_before, 200'000u);
    // The rest: one request per run of missing chunks (bin/big's first and last), then the
    // cache.
    const int before3 = blobs_.ranges();
    EXPECT_EQ(ReadAll(*tree, "bin/big"), PseudoRandomBytes(300'000, 7));
    EXPECT_EQ(ReadAll(*tree, "bin/text"), Text(200'000, 2));
    EXPECT_EQ(ReadAll(*tree, "etc/passwd"), Text(3000, 1));
    EXPECT_EQ(blobs_.ranges() - before3, 3);
    EXPECT_EQ(blobs_.opens(), 0);
    tree.reset();
    index_.reset();
    RemoveTree(store_).IgnoreError();
    ASSERT_EQ(::mkdir(store_.c_str(), 0700), 0);
  }
}

TEST_F(TocTest, ATocThatDoesNotMatchItsAnnotationIsRefused) {
  for (StargzFormat f : kFormats) {
    ImageSpec spec;
    spec.layers.push_back(StargzLayerOf(RichEntries(), f));
    spec.layers[0].annotations[std::string(kTocDigestAnnotation)] =
        Sha256Of("another TOC").ToString();
    auto img = BuildImage(spec);
    ASSERT_TRUE(img.ok());
    blobs_.AddImage(*img);
    ImageDescriptor d = testing::DescriptorOf(*img);
    d.layers[0].annotations = spec.layers[0].annotations;
    auto idx = Index::Open(Options(true));
    ASSERT_TRUE(idx.ok());
    Status s = (*idx)->AddImage(d, blobs_, nullptr);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_NE(s.message().find("layer " + d.layers[0].digest.Short()), std::string::npos)
        << s.ToString();
    EXPECT_NE(s.message().find("TOC"), std::string::npos) << s.ToString();
    EXPECT_FALSE(*(*idx)->HasImage(d.manifest_digest));
  }
}

TEST_F(TocTest, ACorruptChunkIsDetectedAndNeverServed) {
  for (StargzFormat f : kFormats) {
    SCOPED_TRACE(f == StargzFormat::kEstargz ? "estargz" : "zstd:chunked");
    // Two layers alike but for one file's bytes (incompressible, same length): the blob served
    // after indexing inflates cleanly, to a chunk that is not the one the TOC names.
    auto entries = [](uint64_t seed) {
      return std::vector<testing::Entry>{File("a/data", PseudoRandomBytes(50'000, seed), 0644)};
    };
    StargzLayer good, evil;
    ImageSpec spec;
    spec.layers.push_back(StargzLayerOf(entries(1), f, &good));
    // Compressed sizes vary a little with the bytes: find other bytes whose chunk ends where
    // the good one does.
    const LayerCompression comp =
        f == StargzFormat::kEstargz ? LayerCompression::kGzip : LayerCompression::kZstd;
    auto payload_end = [&](const std::string& blob) {
      auto footer = ParseTocFooter(comp, std::string_view(blob).substr(blob.size() - kTocTailSize),
                                   blob.size());
      return footer.ok() ? footer->payload_end : 0;
    };
    uint64_t seed = 2;
    for (; seed < 200; ++seed) {
      StargzLayerOf(entries(seed), f, &evil);
      if (payload_end(evil.blob) == payload_end(good.blob)) break;
    }
    ASSERT_LT(seed, 200u) << "no alike layer found";
    auto tree = Open(spec);
    ASSERT_NE(tree, nullptr);
    blobs_.Add(desc_.layers[0].digest, evil.blob);
    ReadAll(*tree, "a/data", false);
    EXPECT_EQ(last_read_.code(), StatusCode::kDataLoss) << last_read_.ToString();
    EXPECT_NE(last_read_.message().find("chunkDigest"), std::string::npos) << last_read_.ToString();
    EXPECT_FALSE(Cached(Sha256Of(PseudoRandomBytes(50'000, seed))));
    EXPECT_FALSE(Cached(Sha256Of(PseudoRandomBytes(50'000, 1))));
    // Bytes that do not even inflate: the same verdict.
    std::string flipped = good.blob;
    flipped[200] ^= 0xff;
    blobs_.Add(desc_.layers[0].digest, flipped);
    ReadAll(*tree, "a/data", false);
    EXPECT_EQ(last_read_.code(), StatusCode::kDataLoss) << last_read_.ToString();
    // The right bytes again: served.
    blobs_.Add(desc_.layers[0].digest, good.blob);
    EXPECT_EQ(ReadAll(*tree, "a/data"), PseudoRandomBytes(50'000, 1));
    tree.reset();
    index_.reset();
    RemoveTree(store_).IgnoreError();
    ASSERT_EQ(::mkdir(store_.c_str(), 0700), 0);
  }
}

// Polls (the prefetch thread is asynchronous) until `done` or a generous limit.
bool Eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 3000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

TEST_F(TocTest, LandmarkPrefetchFetchesThePrioritizedFilesOnly) {
  ImageSpec spec;
  spec.layers.push_back(
      StargzLayerOf(RichEntries(), StargzFormat::kEstargz, nullptr, "etc/passwd,etc/hosts"));
  prefetch_ = PrefetchMode::kLandmark;
  auto tree = Open(spec);
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(Eventually([&] { return Cached(Sha256Of(Text(3000, 1))); }));
  EXPECT_TRUE(Eventually([&] { return Cached(Sha256Of("127.0.0.1 localhost\n")); }));
  tree.reset();  // stops prefetch
  EXPECT_FALSE(Cached(Sha256Of(std::string_view(PseudoRandomBytes(300'000, 7)).substr(0, 65536))));
}

TEST_F(TocTest, PrefetchAllFetchesEveryFileAndChecksTheWholeLayers) {
  ImageSpec spec;
  spec.layers.push_back(StargzLayerOf(RichEntries(), StargzFormat::kEstargz));
  spec.layers.push_back(StargzLayerOf({File("z/zz", Text(90'000, 9))}, StargzFormat::kZstdChunked));
  prefetch_ = PrefetchMode::kAll;
  auto tree = Open(spec);
  ASSERT_NE(tree, nullptr);
  for (const LayerDescriptor& l : desc_.layers) {
    const std::string marker = store_ + "/content/verified/" + l.digest.Hex();
    EXPECT_TRUE(Eventually([&] { return ::access(marker.c_str(), F_OK) == 0; }))
        << "layer " << l.digest.Short() << " was not checked as a whole";
  }
  const int ranges = blobs_.ranges();
  auto got = testing::ListTree(*tree);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(blobs_.ranges(), ranges) << "prefetch all left something to fetch";
  EXPECT_EQ(blobs_.opens(), 0);
}

// A TOC layer is indexed without decompressing it, so its whole-layer check is the first pass
// over all of it: that pass has the same expansion cap as a streamed layer. Here an eStargz
// layer of 8 MiB of zeros (a few KiB compressed) under a cap of 4 times its size: the check
// stops at the cap and fails, and the layer is refused from then on.
TEST_F(TocTest, TheWholeLayerCheckOfATocLayerHasTheExpansionCap) {
  small_expansion_cap_ = true;
  prefetch_ = PrefetchMode::kAll;
  ImageSpec spec;
  spec.layers.push_back(
      StargzLayerOf({File("zeros", std::string(8 << 20, '\0'))}, StargzFormat::kEstargz));
  auto tree = Open(spec);
  ASSERT_NE(tree, nullptr);
  const Digest layer = desc_.layers[0].digest;
  // Prefetch fetches every chunk (each inflated alone, within its chunk size), then the check.
  EXPECT_TRUE(Eventually([&] {
    last_read_ = Status::Ok();
    ReadAll(*tree, "zeros", false);
    return last_read_.code() == StatusCode::kDataLoss;
  })) << "the layer was never refused: " << last_read_.ToString();
  EXPECT_NE(::access((store_ + "/content/verified/" + layer.Hex()).c_str(), F_OK), 0);
}

// A TOC is the manifest's word only by its digest: one that disagrees with its own tar stream
// (a file under another name, a setuid bit the tar header does not give) is found out once the
// layer is fetched whole. materialize (WarmContent) fetches every TOC layer whole before it
// writes anything, fails naming the layer, and the layer stays refused in later processes too.
TEST_F(TocTest, ATocThatLiesAboutItsTarStreamIsRefusedForGood) {
  struct Lie {
    std::string spec, shown, error;
  };
  const Lie lies[] = {{"rename:etc/hosts=etc/shadow", "etc/shadow", "\"etc/hosts\""},
                      {"mode:etc/hosts=4755", "etc/hosts", "mode 0644 in the tar stream, 04755"}};
  for (StargzFormat f : kFormats) {
    for (const Lie& lie : lies) {
      SCOPED_TRACE(std::string(f == StargzFormat::kEstargz ? "estargz " : "zstd:chunked ") +
                   lie.spec);
      ImageSpec spec;
      spec.layers.push_back(StargzLayerOf(RichEntries(), f, nullptr, "", lie.spec));
      auto tree = Open(spec);
      ASSERT_NE(tree, nullptr);
      const Digest layer = desc_.layers[0].digest;
      // What the TOC claims is what was indexed: the lie is real.
      auto etc = tree->Lookup(kRootIno, "etc");
      ASSERT_TRUE(etc.ok());
      auto shown = tree->Lookup(etc->ino, lie.shown.substr(4));
      ASSERT_TRUE(shown.ok()) << shown.status().ToString();
      if (lie.spec.starts_with("mode")) {
        EXPECT_EQ(shown->mode & 07777, 04755u);
      }
      Status s = index_->WarmContent(desc_.manifest_digest, blobs_, 0, nullptr);
      EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
      EXPECT_NE(s.message().find("layer " + layer.Short()), std::string::npos) << s.ToString();
      EXPECT_NE(s.message().find("TOC lies about"), std::string::npos) << s.ToString();
      EXPECT_NE(s.message().find(lie.error), std::string::npos) << s.ToString();
      ReadAll(*tree, lie.shown, false);
      EXPECT_EQ(last_read_.code(), StatusCode::kDataLoss) << last_read_.ToString();
      EXPECT_NE(::access((store_ + "/content/verified/" + layer.Hex()).c_str(), F_OK), 0);
      // Another process over the same store: still refused, without fetching it again.
      tree.reset();
      index_.reset();
      auto idx = Index::Open(Options(false));
      ASSERT_TRUE(idx.ok());
      index_ = std::move(*idx);
      auto again = index_->OpenTree(desc_.manifest_digest, blobs_);
      ASSERT_TRUE(again.ok());
      const int ranges = blobs_.ranges();
      ReadAll(**again, "etc/passwd", false);
      EXPECT_EQ(last_read_.code(), StatusCode::kDataLoss) << last_read_.ToString();
      EXPECT_NE(last_read_.message().find("TOC lies about"), std::string::npos)
          << last_read_.ToString();
      s = index_->WarmContent(desc_.manifest_digest, blobs_, 0, nullptr);
      EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
      EXPECT_EQ(blobs_.ranges(), ranges);
      const std::string bad = store_ + "/content/verified/" + layer.Hex() + ".bad";
      EXPECT_EQ(::access(bad.c_str(), F_OK), 0);
      // Once no stored image holds the layer, gc forgets the verdict with it.
      again->reset();
      index_.reset();
      idx = Index::Open(Options(true));
      ASSERT_TRUE(idx.ok());
      ASSERT_TRUE((*idx)->RemoveImage(desc_.manifest_digest).ok());
      ASSERT_TRUE((*idx)->Gc().ok());
      EXPECT_NE(::access(bad.c_str(), F_OK), 0);
      idx->reset();
      RemoveTree(store_).IgnoreError();
      ASSERT_EQ(::mkdir(store_.c_str(), 0700), 0);
    }
    // The same layer without the lie passes, and is then trusted without another fetch.
    ImageSpec spec;
    spec.layers.push_back(StargzLayerOf(RichEntries(), f));
    auto tree = Open(spec);
    ASSERT_NE(tree, nullptr);
    Status s = index_->WarmContent(desc_.manifest_digest, blobs_, 0, nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
    const int ranges = blobs_.ranges();
    EXPECT_EQ(ReadAll(*tree, "etc/passwd"), Text(3000, 1));
    EXPECT_EQ(blobs_.ranges(), ranges);
    tree.reset();
    index_.reset();
    RemoveTree(store_).IgnoreError();
    ASSERT_EQ(::mkdir(store_.c_str(), 0700), 0);
  }
}

// A TOC may name any digest, the digest of a file of another image in the same store among
// them. A cached object is served as a TOC layer's file only once that layer's own bytes
// produced it: here the TOC names the content of an earlier layer's secret for a file whose
// bytes are something else, and the read fetches those bytes and fails instead of serving the
// secret.
TEST_F(TocTest, ACachedObjectIsServedForATocFileOnlyFromThatLayersOwnBytes) {
  const std::string secret = Text(5000, 7), other = Text(5000, 8);
  for (StargzFormat f : kFormats) {
    SCOPED_TRACE(f == StargzFormat::kEstargz ? "estargz" : "zstd:chunked");
    ImageSpec spec;
    testing::Layer plain;
    plain.entries = {File("secret", secret, 0600)};
    spec.layers.push_back(plain);
    spec.layers.push_back(StargzLayerOf({File("f", other)}, f, nullptr, "",
                                        "digest:f=" + Sha256Of(secret).ToString()));
    auto tree = Open(spec);
    ASSERT_NE(tree, nullptr);
    EXPECT_EQ(ReadAll(*tree, "secret"), secret);
    ASSERT_TRUE(Cached(Sha256Of(secret)));
    const int ranges = blobs_.ranges();
    const std::string got = ReadAll(*tree, "f", false);
    EXPECT_EQ(last_read_.code(), StatusCode::kDataLoss) << last_read_.ToString();
    EXPECT_NE(got, secret);
    EXPECT_GT(blobs_.ranges(), ranges) << "served from the cache without fetching the layer's bytes";
    tree.reset();
    index_.reset();
    RemoveTree(store_).IgnoreError();
    ASSERT_EQ(::mkdir(store_.c_str(), 0700), 0);
  }
}

}  // namespace
}  // namespace lazyfs::index

namespace lazyfs::index {
namespace {

// A TOC whose chunk's span (from its member to the next chunk, or the TOC) stretches far past
// the chunk's own bytes would make every read of it fetch that much: refused as Unimplemented,
// so the layer is indexed as a plain stream instead.
TEST(TocLimitsTest, AChunkWhoseSpanStretchesFarPastItsBytesIsRefused) {
  const std::string data = "hello", other = "world";
  auto toc_json = [&](uint64_t second_offset) {
    return std::string(R"({"version":1,"entries":[)") +
           R"({"name":"a","type":"reg","size":5,"digest":")" + Sha256Of(data).ToString() +
           R"(","offset":100,"chunkOffset":0,"chunkSize":0,"innerOffset":0,"chunkDigest":")" +
           Sha256Of(data).ToString() + R"("},)" +
           R"({"name":"b","type":"reg","size":5,"digest":")" + Sha256Of(other).ToString() +
           R"(","offset":)" + std::to_string(second_offset) +
           R"(,"chunkOffset":0,"chunkSize":0,"innerOffset":0,"chunkDigest":")" +
           Sha256Of(other).ToString() + R"("}]})";
  };
  TocFooter footer;
  footer.format = TocFormat::kZstdChunked;
  footer.payload_end = uint64_t{1} << 40;
  TocLimits limits;
  // Neighbouring chunks: fine.
  auto ok = ParseToc(toc_json(200), footer, limits);
  ASSERT_FALSE(ok.ok());  // the second chunk runs to the TOC, a TiB away
  EXPECT_EQ(ok.status().code(), StatusCode::kUnimplemented) << ok.status().ToString();
  EXPECT_NE(ok.status().message().find("spans"), std::string::npos) << ok.status().ToString();
  footer.payload_end = 300;
  ok = ParseToc(toc_json(200), footer, limits);
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
  // The first chunk runs to the second, 64 MiB on: too far.
  footer.payload_end = (uint64_t{64} << 20) + 300;
  auto far = ParseToc(toc_json(uint64_t{64} << 20), footer, limits);
  ASSERT_FALSE(far.ok());
  EXPECT_EQ(far.status().code(), StatusCode::kUnimplemented) << far.status().ToString();
}

}  // namespace
}  // namespace lazyfs::index
