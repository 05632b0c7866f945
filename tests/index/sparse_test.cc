// Sparse files: a 100 GiB file that is almost all hole is indexed, read and cached without its
// holes ever being expanded, hashed or stored; its digest is the chunk-list digest of
// index/sparse.h, whatever map the tar used; an apparent size past the cap is refused at once.
#include "index/sparse.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "base/fd.h"
#include "index/tree.h"
#include "tests/index/blob_fake.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"

namespace lazyfs::index {
namespace {

using testing::BuildImage;
using testing::DescriptorOf;
using testing::File;
using testing::ImageSpec;
using testing::MemoryBlobs;
using testing::PseudoRandomBytes;
using testing::SparseFile;

constexpr uint64_t kGiB = uint64_t{1} << 30;

// The digest sparse.h defines, computed here from the file's pieces without the library's
// chunker: each chunk assembled in memory when data touches it, else the zero chunk.
Digest ExpectedDigest(uint64_t size, const std::map<uint64_t, std::string>& data) {
  std::vector<Digest> chunks;
  std::map<uint64_t, Digest> zeros;  // by length
  for (uint64_t start = 0; start < size; start += kContentChunkSize) {
    const uint64_t len = std::min(kContentChunkSize, size - start);
    std::string chunk;
    for (const auto& [offset, bytes] : data) {
      const uint64_t end = offset + bytes.size();
      if (end <= start || offset >= start + len) continue;
      if (chunk.empty()) chunk.assign(len, '\0');
      const uint64_t from = std::max(offset, start), to = std::min(end, start + len);
      chunk.replace(from - start, to - from, bytes.substr(from - offset, to - from));
    }
    if (chunk.empty() && !zeros.count(len)) zeros[len] = Sha256Of(std::string(len, '\0'));
    chunks.push_back(chunk.empty() ? zeros[len] : Sha256Of(chunk));
  }
  return SparseFileDigest(size, chunks);
}

uint64_t DiskUsage(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    struct stat st;
    if (::lstat(e.path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

class SparseFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lazyfs-sparse-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    store_ = tmpl;
  }
  void TearDown() override { RemoveTree(store_).IgnoreError(); }

  IndexOptions Options(bool writable) {
    IndexOptions o;
    o.store = StoreLayout{store_};
    o.writable = writable;
    o.read_timeout = std::chrono::milliseconds(5000);
    return o;
  }

  Status Add(const ImageSpec& spec) {
    auto img = BuildImage(spec);
    if (!img.ok()) return img.status();
    blobs_.AddImage(*img);
    desc_ = DescriptorOf(*img);
    LAZYFS_ASSIGN_OR_RETURN(auto idx, Index::Open(Options(true)));
    return idx->AddImage(desc_, blobs_, nullptr);
  }

  std::string store_;
  MemoryBlobs blobs_;
  ImageDescriptor desc_;
};

TEST_F(SparseFileTest, AHundredGibFileIsIndexedAndReadWithoutItsHoles) {
  const uint64_t size = 100 * kGiB;
  const std::map<uint64_t, std::string> data = {
      {0, "head of the file\n"},
      {50 * kGiB - 1000, PseudoRandomBytes(3 << 20, 5)},  // across chunk boundaries
      {size - 10, "last bytes"}};
  ImageSpec spec;
  testing::Layer layer;
  layer.entries = {File("etc/hosts", "127.0.0.1 localhost\n"),
                   SparseFile("var/log/lastlog", size, data, 0644)};
  spec.layers = {layer};
  ASSERT_TRUE(Add(spec).ok());

  auto idx = Index::Open(Options(false));
  ASSERT_TRUE(idx.ok());
  auto tree = (*idx)->OpenTree(desc_.manifest_digest, blobs_);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto var = (*tree)->Lookup(kRootIno, "var");
  ASSERT_TRUE(var.ok());
  auto log = (*tree)->Lookup(var->ino, "log");
  ASSERT_TRUE(log.ok());
  auto f = (*tree)->Lookup(log->ino, "lastlog");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->size, size);
  EXPECT_EQ(*(*tree)->ContentDigest(f->ino), ExpectedDigest(size, data));

  // Where data may be: the chunks the data touches, nothing else.
  auto layout = (*tree)->Layout(f->ino);
  ASSERT_TRUE(layout.ok());
  EXPECT_TRUE(layout->sparse);
  const uint64_t mid = (50 * kGiB - 1000) / kContentChunkSize * kContentChunkSize;
  const Extents want = {{0, kContentChunkSize},
                        {mid, mid + 4 * kContentChunkSize},
                        {size - kContentChunkSize, size}};
  EXPECT_EQ(layout->data, want);

  // A hole reads as zeros without a fetch.
  const int fetches = blobs_.opens() + blobs_.ranges();
  std::string buf(1 << 20, 'x');
  auto n = (*tree)->Read(f->ino, 30 * kGiB, std::as_writable_bytes(std::span(buf)));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, buf.size());
  EXPECT_EQ(buf, std::string(buf.size(), '\0'));
  EXPECT_EQ(blobs_.opens() + blobs_.ranges(), fetches);

  // Data reads fetch the layer once and return the bytes, zeros around them.
  std::string got(3 << 20, 'x');
  n = (*tree)->Read(f->ino, 50 * kGiB - 1000, std::as_writable_bytes(std::span(got)));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(got, data.at(50 * kGiB - 1000));
  std::string tail(20, 'x');
  n = (*tree)->Read(f->ino, size - 20, std::as_writable_bytes(std::span(tail)));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(tail, std::string(10, '\0') + "last bytes");

  // Read back through the layout alone, the file has its digest; the cache holds its data
  // chunks only.
  auto again = DigestOfFile(**tree, f->ino, size, true);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, ExpectedDigest(size, data));
  EXPECT_LT(DiskUsage(store_), uint64_t{64} << 20);
}

TEST_F(SparseFileTest, AnApparentSizePastTheCapIsRefusedNamingTheCap) {
  ImageSpec spec;
  testing::Layer layer;
  layer.entries = {SparseFile("huge", uint64_t{2} << 50, {{0, "x"}})};
  spec.layers = {layer};
  Status s = Add(spec);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("max_file_size"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(std::to_string(kDefaultMaxFileSize)), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("\"huge\""), std::string::npos) << s.ToString();
}

// The digest is the bytes', not the map's: data that is zeros, or a hole, give the same chunks.
TEST(SparseChunkerTest, TheDigestDependsOnTheBytesNotOnTheMap) {
  const uint64_t size = 5 * kContentChunkSize + 123;
  auto digest = [&](const std::vector<std::pair<uint64_t, std::string>>& blocks) {
    SparseChunker c(size, nullptr);
    for (const auto& [off, bytes] : blocks) EXPECT_TRUE(c.Data(off, bytes).ok());
    return *c.Finish(nullptr);
  };
  const std::string z(kContentChunkSize, '\0');
  const Digest a = digest({{100, "abc"}, {3 * kContentChunkSize, "def"}});
  const Digest b = digest({{0, std::string(100, '\0') + "abc"},
                           {kContentChunkSize, z},
                           {3 * kContentChunkSize - 5, std::string(5, '\0') + "def"}});
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, ExpectedDigest(size, {{100, "abc"}, {3 * kContentChunkSize, "def"}}));
  EXPECT_NE(a, digest({{100, "abd"}, {3 * kContentChunkSize, "def"}}));
  SparseChunker c(size, nullptr);
  EXPECT_TRUE(c.Data(10, "x").ok());
  EXPECT_EQ(c.Data(5, "y").code(), StatusCode::kInvalidArgument);  // backwards
  EXPECT_EQ(c.Data(size, "y").code(), StatusCode::kInvalidArgument);  // past the size
}

TEST(SparseMapTest, OverlappingOrOversizedMapsAreRefused) {
  EXPECT_TRUE(CheckSparseMap({{0, 10}, {10, 5}, {20, 0}}, 30).ok());
  EXPECT_EQ(CheckSparseMap({{0, 10}, {5, 10}}, 30).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckSparseMap({{10, 5}, {0, 2}}, 30).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckSparseMap({{25, 10}}, 30).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckSparseMap({{UINT64_MAX - 1, 10}}, 30).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lazyfs::index
