// Index module tests: layers read, merged and stored in RocksDB, served as a Tree, against the
// independent merge oracle of the image builder (ExpectedListing). Blobs come from memory.
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <thread>

#include "base/fd.h"
#include "base/stats.h"
#include "index/schema.h"
#include "index/tree.h"
#include "tests/index/blob_fake.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"

namespace lazyfs::index {
namespace {

using testing::BuildImage;
using testing::BuiltImage;
using testing::DescriptorOf;
using testing::ImageSpec;
using testing::MemoryBlobs;

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lazyfs-index-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    store_ = tmpl;
  }
  void TearDown() override { RemoveTree(store_).IgnoreError(); }

  std::unique_ptr<Index> OpenIndex(bool writable) {
    IndexOptions o;
    o.store = StoreLayout{store_};
    o.writable = writable;
    auto idx = Index::Open(o);
    EXPECT_TRUE(idx.ok()) << idx.status().ToString();
    return idx.ok() ? std::move(*idx) : nullptr;
  }

  // Builds, indexes and returns the image's descriptor.
  ImageDescriptor Add(const ImageSpec& spec, MemoryBlobs& blobs) {
    auto img = BuildImage(spec);
    EXPECT_TRUE(img.ok()) << img.status().ToString();
    blobs.AddImage(*img);
    ImageDescriptor desc = DescriptorOf(*img);
    auto idx = OpenIndex(true);
    Status s = idx->AddImage(desc, blobs, nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return desc;
  }

  std::string store_;
};

TEST_F(IndexTest, FoundationImageMatchesTheSpecMerge) {
  MemoryBlobs blobs;
  const ImageSpec spec = testing::FoundationSpec();
  ImageDescriptor desc = Add(spec, blobs);
  auto idx = OpenIndex(false);
  auto tree = idx->OpenTree(desc.manifest_digest, blobs);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto got = testing::ListTree(**tree);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  auto want = testing::ExpectedListing(spec);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  EXPECT_EQ(testing::DiffListings(*want, *got), "");
  // Spot checks of the rules, in case the oracle and the index share a misreading.
  EXPECT_FALSE(got->count("/etc/hostname"));
  EXPECT_FALSE(got->count("/var/lib/old/a"));
  EXPECT_TRUE(got->count("/var/lib/old/c"));
  EXPECT_EQ(got->at("/opt/app").type, 'f');
  EXPECT_EQ(got->at("/etc/conf.d").type, 'd');
  EXPECT_EQ(got->at("/usr/bin/tool").nlink, 3u);
  EXPECT_EQ(got->at("/usr/bin/tool").mode, 04755u);
  EXPECT_EQ(got->at("/tmp").mode, 01777u);
  EXPECT_EQ(got->at("/srv/nobody").uid, 65534u);
  EXPECT_EQ(got->at("/usr/bin/ping").xattrs.count("security.capability"), 1u);
  EXPECT_EQ(got->at("/dev/null").rdev_major, 1u);
  EXPECT_EQ(got->at("/etc/future").mtime_sec, 4102444800);

  TreeStats st = (*tree)->Stats();
  EXPECT_EQ(st.inodes, got->size() - 2);  // two extra names of usr/bin/tool share its inode
}

TEST_F(IndexTest, EveryCompressionAndTarDialect) {
  for (auto comp : {testing::Compression::kNone, testing::Compression::kGzip,
                    testing::Compression::kZstd}) {
    for (auto fmt : {testing::TarFormat::kPax, testing::TarFormat::kGnu,
                     testing::TarFormat::kUstar}) {
      SCOPED_TRACE(testing::LayerMediaType(comp) + " format " + std::to_string(int(fmt)));
      ImageSpec spec;
      testing::Layer l;
      l.compression = comp;
      l.format = fmt;
      l.entries = {testing::Dir("d", 0750, 1000, 1000),
                   testing::File("d/f", testing::PseudoRandomBytes(300000, 7), 04711, 1000, 1000),
                   testing::Hardlink("d/h", "d/f"), testing::Symlink("d/s", "f"),
                   testing::Fifo("d/p"), testing::CharDev("d/c", 4, 64)};
      if (fmt != testing::TarFormat::kUstar) {
        l.entries.push_back(testing::File(std::string(120, 'L') + "/" + std::string(200, 'n'), "long"));
      }
      spec.layers = {l};
      MemoryBlobs blobs;
      ImageDescriptor desc = Add(spec, blobs);
      auto idx = OpenIndex(false);
      auto tree = idx->OpenTree(desc.manifest_digest, blobs);
      ASSERT_TRUE(tree.ok()) << tree.status().ToString();
      auto got = testing::ListTree(**tree);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(testing::DiffListings(*testing::ExpectedListing(spec), *got), "");
      TearDown();
      SetUp();
    }
  }
}

TEST_F(IndexTest, SecondAddAndSharedLayersReadNothing) {
  MemoryBlobs blobs;
  ImageSpec a = testing::FoundationSpec();
  ImageDescriptor da = Add(a, blobs);
  const int after_first = blobs.opens();
  EXPECT_EQ(after_first, 3);  // each layer read once to index it
  {
    auto idx = OpenIndex(true);
    ASSERT_TRUE(idx->AddImage(da, blobs, nullptr).ok());
  }
  EXPECT_EQ(blobs.opens(), after_first);
  // A second image sharing the two bottom layers reads only its new top layer.
  ImageSpec b = a;
  b.layers.pop_back();
  testing::Layer top;
  top.entries = {testing::File("new", "only here")};
  b.layers.push_back(top);
  ImageDescriptor db = Add(b, blobs);
  EXPECT_EQ(blobs.opens(), after_first + 1);
  auto idx = OpenIndex(false);
  EXPECT_TRUE(*idx->HasImage(da.manifest_digest));
  EXPECT_TRUE(*idx->HasImage(db.manifest_digest));
}

TEST_F(IndexTest, ReadsComeFromTheCacheAfterTheFirst) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(testing::FoundationSpec(), blobs);
  auto idx = OpenIndex(false);
  auto tree = idx->OpenTree(desc.manifest_digest, blobs);
  ASSERT_TRUE(tree.ok());
  auto attr = (*tree)->Lookup(kRootIno, "data");
  ASSERT_TRUE(attr.ok());
  auto big = (*tree)->Lookup(attr->ino, "big");
  ASSERT_TRUE(big.ok());
  std::vector<std::byte> buf(1000);
  const int before = blobs.opens(), ranges = blobs.ranges();
  ASSERT_EQ(*(*tree)->Read(big->ino, 5 << 20, buf), 1000u);
  // Range requests (growing ones: this layer is one zstd frame), no whole-blob download.
  EXPECT_EQ(blobs.opens(), before);
  EXPECT_GE(blobs.ranges(), ranges + 1);
  // The chunk is cached: a fresh process (a new Index) reads it without the blob source.
  for (const auto& l : desc.layers) blobs.Remove(l.digest);
  auto idx2 = OpenIndex(false);
  auto tree2 = idx2->OpenTree(desc.manifest_digest, blobs);
  ASSERT_TRUE(tree2.ok());
  auto got = (*tree2)->Read(big->ino, (5 << 20) + 10, buf);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  const std::string expect = testing::PseudoRandomBytes(6 << 20, 2).substr((5 << 20) + 10, 1000);
  EXPECT_EQ(std::memcmp(buf.data(), expect.data(), 1000), 0);
  // Past the end, and a read that straddles it.
  EXPECT_EQ(*(*tree2)->Read(big->ino, 6 << 20, buf), 0u);
  EXPECT_EQ(*(*tree2)->Read(big->ino, (6 << 20) - 10, buf), 10u);
}

TEST_F(IndexTest, CorruptCacheObjectIsDroppedAndFetchedAgain) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(testing::FoundationSpec(), blobs);
  auto idx = OpenIndex(false);
  auto tree = idx->OpenTree(desc.manifest_digest, blobs);
  ASSERT_TRUE(tree.ok());
  auto etc = (*tree)->Lookup(kRootIno, "etc");
  auto motd = (*tree)->Lookup(etc->ino, "motd");
  ASSERT_TRUE(motd.ok());
  std::vector<std::byte> buf(100);
  ASSERT_EQ(*(*tree)->Read(motd->ino, 0, buf), 15u);
  const Digest d = *(*tree)->ContentDigest(motd->ino);
  const std::string obj = store_ + "/content/sha256/" + d.Hex();
  ASSERT_TRUE(WriteFileAtomic(obj, "from layer tw0\n").ok());
  // A new process (a new Index) must not trust the object: it drops it and fetches it again.
  auto idx2 = OpenIndex(false);
  auto tree2 = idx2->OpenTree(desc.manifest_digest, blobs);
  const int before = blobs.ranges();
  const uint64_t dropped = Counter(kStatCacheCorrupt).Get();
  auto n = (*tree2)->Read(motd->ino, 0, buf);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf.data()), *n), "from layer two\n");
  EXPECT_EQ(blobs.ranges(), before + 1);
  EXPECT_EQ(Counter(kStatCacheCorrupt).Get(), dropped + 1);
}

TEST_F(IndexTest, ConcurrentMissesOfOneFileShareOneRequest) {
  MemoryBlobs blobs;
  ImageSpec spec;
  testing::Layer l;
  for (int i = 0; i < 64; ++i) {
    l.entries.push_back(testing::File("f" + std::to_string(i), testing::PseudoRandomBytes(50000, i)));
  }
  spec.layers = {l};
  ImageDescriptor desc = Add(spec, blobs);
  auto idx = OpenIndex(false);
  auto tree = idx->OpenTree(desc.manifest_digest, blobs);
  ASSERT_TRUE(tree.ok());
  const int before = blobs.ranges();
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  // Every thread reads every file, in the same order: each file is fetched at most once (once
  // cached as a neighbour of another, not at all), never once per thread.
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 64; ++i) {
        auto a = (*tree)->Lookup(kRootIno, "f" + std::to_string(i));
        std::vector<std::byte> buf(50000);
        auto n = (*tree)->Read(a->ino, 0, buf);
        const std::string want = testing::PseudoRandomBytes(50000, i);
        if (!n.ok() || *n != 50000 || std::memcmp(buf.data(), want.data(), 50000) != 0) bad++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_GT(blobs.ranges(), before);
  EXPECT_LE(blobs.ranges(), before + 64);
}

TEST_F(IndexTest, HostileNamesAreRefusedAndNothingIsStored) {
  struct Case {
    const char* name;
    testing::Entry entry;
    const char* error;
  };
  const Case cases[] = {
      {"dotdot", testing::Raw("../etc/passwd"), "escapes the root"},
      {"inner dotdot", testing::Raw("a/../../x"), "escapes the root"},
      {"absolute dotdot", testing::Raw("/../etc/passwd"), "escapes the root"},
      {"bare whiteout", testing::Raw("dir/.wh."), "whiteout without a name"},
      {"hardlink outside", testing::Raw("h", testing::EntryType::kHardlink, "", "../x"),
       "escapes the root"},
      {"hardlink to missing", testing::Hardlink("h", "nothing/here"), "does not exist"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ImageSpec spec;
    testing::Layer l;
    l.entries = {testing::File("ok", "fine"), c.entry};
    spec.layers = {l};
    auto img = BuildImage(spec);
    ASSERT_TRUE(img.ok()) << img.status().ToString();
    MemoryBlobs blobs;
    blobs.AddImage(*img);
    auto idx = OpenIndex(true);
    Status s = idx->AddImage(DescriptorOf(*img), blobs, nullptr);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(c.error), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << "one line: " << s.message();
    EXPECT_FALSE(*idx->HasImage(img->manifest_digest));
  }
}

TEST_F(IndexTest, DamagedLayersAreDataLoss) {
  ImageSpec spec;
  testing::Layer l;
  l.entries = {testing::File("f", testing::PseudoRandomBytes(200000, 3))};
  spec.layers = {l};
  auto img = BuildImage(spec);
  ASSERT_TRUE(img.ok());
  struct Case {
    const char* name;
    std::function<void(BuiltImage&)> damage;
    const char* error;
  };
  const Case cases[] = {
      {"truncated gzip",
       [](BuiltImage& i) { i.layers[0].blob.resize(i.layers[0].blob.size() / 2); },
       "truncated gzip"},
      {"corrupt gzip", [](BuiltImage& i) { i.layers[0].blob[100] ^= 0x55; }, "gzip"},
      {"wrong diff_id", [](BuiltImage& i) { i.layers[0].diff_id = Sha256Of("other"); }, "diff_id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    BuiltImage damaged = *img;
    c.damage(damaged);
    damaged.layers[0].digest = Sha256Of(damaged.layers[0].blob);
    MemoryBlobs blobs;
    blobs.AddImage(damaged);
    auto idx = OpenIndex(true);
    Status s = idx->AddImage(DescriptorOf(damaged), blobs, nullptr);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_NE(s.message().find(c.error), std::string::npos) << s.message();
    EXPECT_FALSE(*idx->HasImage(damaged.manifest_digest));
  }
}

TEST_F(IndexTest, StoreFromANewerVersionIsRefused) {
  { OpenIndex(true); }
  auto set_format = [&](uint64_t ro_compat, uint64_t incompat) {
    rocksdb::DB* raw;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), store_ + "/index", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), std::string(schema::kFormatKey),
                        schema::EncodeFormatRecord(2, 1, ro_compat, incompat))
                    .ok());
  };
  IndexOptions o;
  o.store = StoreLayout{store_};
  set_format(0x4, 0);
  o.writable = false;
  EXPECT_TRUE(Index::Open(o).ok()) << "read-only-compatible features allow reading";
  o.writable = true;
  auto w = Index::Open(o);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("newer lazyfs"), std::string::npos) << w.status().message();
  set_format(0, 0x10);
  o.writable = false;
  auto r = Index::Open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("incompatible features 0x10"), std::string::npos)
      << r.status().message();
}

TEST_F(IndexTest, AnIndexCreatedButNeverWrittenReadsAsEmpty) {
  // What a writer killed right after creating the database leaves: no format record, no keys.
  {
    rocksdb::Options ro;
    ro.create_if_missing = true;
    rocksdb::DB* raw;
    ASSERT_TRUE(rocksdb::DB::Open(ro, store_ + "/index", &raw).ok());
    delete raw;
  }
  IndexOptions o;
  o.store = StoreLayout{store_};
  auto r = Index::Open(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto images = (*r)->ListImages();
  ASSERT_TRUE(images.ok());
  EXPECT_TRUE(images->empty());
  r->reset();
  // Records without a format record are damage, not an interrupted creation.
  {
    rocksdb::DB* raw;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), store_ + "/index", &raw).ok());
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), "Rsome-ref", std::string(32, 'x')).ok());
    delete raw;
  }
  auto damaged = Index::Open(o);
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().code(), StatusCode::kDataLoss);
  // A writer adds the format record and carries on.
  o.writable = true;
  EXPECT_TRUE(Index::Open(o).ok());
}

TEST_F(IndexTest, ReferencesAndDescriptorsRoundTrip) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(testing::FoundationSpec(), blobs);
  {
    auto idx = OpenIndex(true);
    ASSERT_TRUE(idx->SetRef("docker://h/r:t|linux/amd64", desc.manifest_digest).ok());
  }
  auto idx = OpenIndex(false);
  auto ref = idx->LookupRef("docker://h/r:t|linux/amd64");
  ASSERT_TRUE(ref.ok());
  ASSERT_TRUE(ref->has_value());
  EXPECT_EQ(**ref, desc.manifest_digest);
  EXPECT_FALSE(idx->LookupRef("other")->has_value());
  auto got = idx->GetImage(desc.manifest_digest);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->layers.size(), 3u);
  EXPECT_EQ(got->layers[1].media_type, desc.layers[1].media_type);
  EXPECT_EQ(got->layers[2].diff_id, desc.layers[2].diff_id);
  EXPECT_EQ(got->config_digest, desc.config_digest);
}

TEST_F(IndexTest, TreeErrorsCarryErrno) {
  MemoryBlobs blobs;
  ImageDescriptor desc = Add(testing::FoundationSpec(), blobs);
  auto idx = OpenIndex(false);
  auto tree = idx->OpenTree(desc.manifest_digest, blobs);
  auto etc = (*tree)->Lookup(kRootIno, "etc");
  auto passwd = (*tree)->Lookup(etc->ino, "passwd");
  EXPECT_EQ((*tree)->Lookup(kRootIno, "nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*tree)->Lookup(passwd->ino, "x").status().error_number(), ENOTDIR);
  EXPECT_EQ((*tree)->ReadDir(passwd->ino).status().error_number(), ENOTDIR);
  EXPECT_EQ((*tree)->ReadLink(passwd->ino).status().error_number(), EINVAL);
  std::vector<std::byte> buf(10);
  EXPECT_EQ((*tree)->Read(etc->ino, 0, buf).status().error_number(), EISDIR);
  EXPECT_EQ((*tree)->GetAttr(999999).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace lazyfs::index

namespace lazyfs::index {
namespace {

// One small layer listed many times in a manifest is indexed (and held) once; an image whose
// listings hold more entries in all than the image-wide cap is refused before any merge.
TEST_F(IndexTest, ALayerListedManyTimesIsIndexedOnceAndTheImageIsCapped) {
  ImageSpec spec;
  testing::Layer l;
  for (int i = 0; i < 50'000; ++i) l.entries.push_back(testing::File("f/" + std::to_string(i), ""));
  l.entries.push_back(testing::File("hello", "hi\n"));
  spec.layers = {l};
  auto img = BuildImage(spec);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  MemoryBlobs blobs;
  blobs.AddImage(*img);
  ImageDescriptor few = DescriptorOf(*img);
  few.layers.assign(3, few.layers[0]);
  auto idx = OpenIndex(true);
  ASSERT_TRUE(idx->AddImage(few, blobs, nullptr).ok());
  EXPECT_EQ(blobs.opens(), 1) << "a layer listed three times was read more than once";
  auto tree = idx->OpenTree(few.manifest_digest, blobs);
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ((*tree)->Stats().regular_files, 50'001u);

  ImageDescriptor many = DescriptorOf(*img);
  many.manifest_digest = Sha256Of("another manifest");
  many.layers.assign(300, many.layers[0]);
  Status s = idx->AddImage(many, blobs, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find("entries over its 300 layers"), std::string::npos) << s.ToString();
  EXPECT_FALSE(*idx->HasImage(many.manifest_digest));
}

}  // namespace
}  // namespace lazyfs::index
