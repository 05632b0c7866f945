// LayerReader and NormaliseEntryPath: names, dialects and damaged streams.
#include "index/layer_reader.h"
#include "index/inflate.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "base/fd.h"
#include "tests/support/image_builder.h"

namespace lazyfs::index {
namespace {

TEST(NormaliseEntryPath, Table) {
  struct Case {
    const char* in;
    const char* out;  // nullptr: an error containing `error`
    const char* error;
  };
  const Case cases[] = {
      {"etc/passwd", "etc/passwd", nullptr},
      {"./etc/passwd", "etc/passwd", nullptr},
      {"etc//x/", "etc/x", nullptr},
      {"./", "", nullptr},
      {".", "", nullptr},
      {"a/./b", "a/b", nullptr},
      {"", nullptr, "empty"},
      {"/etc", "etc", nullptr},  // relative to the image root, as container tools take it
      {"//etc/./x", "etc/x", nullptr},
      {"/..", nullptr, "escapes"},
      {"..", nullptr, "escapes"},
      {"a/../b", nullptr, "escapes"},
      {"a/..", nullptr, "escapes"},
  };
  for (const Case& c : cases) {
    auto r = NormaliseEntryPath(c.in);
    if (c.out) {
      ASSERT_TRUE(r.ok()) << c.in << ": " << r.status().ToString();
      EXPECT_EQ(*r, c.out) << c.in;
    } else {
      ASSERT_FALSE(r.ok()) << c.in;
      EXPECT_NE(r.status().message().find(c.error), std::string::npos) << r.status().message();
    }
  }
  EXPECT_TRUE(NormaliseEntryPath(std::string(255, 'x')).ok());
  EXPECT_FALSE(NormaliseEntryPath(std::string(256, 'x')).ok());
  std::string deep;
  while (deep.size() < 4100) deep += "abcdefgh/";
  EXPECT_FALSE(NormaliseEntryPath(deep).ok());
}

Result<Fd> MemFd(const std::string& bytes) {
  Fd fd(memfd_create("layer", MFD_CLOEXEC));
  if (!fd.valid()) return ErrnoError(errno, "memfd_create");
  LAZYFS_RETURN_IF_ERROR(WriteAll(fd.get(), bytes.data(), bytes.size()));
  return fd;
}

TEST(LayerReader, EntriesDigestsAndDiffId) {
  const std::string content = "hello, layer\n";
  auto tar = testing::BuildLayerTar({testing::Dir("d", 0700, 5, 6), testing::File("d/f", content, 0640),
                                     testing::Whiteout("d/gone"), testing::Opaque("d")});
  ASSERT_TRUE(tar.ok());
  for (auto comp : {testing::Compression::kNone, testing::Compression::kGzip,
                    testing::Compression::kZstd}) {
    auto blob = testing::Compress(*tar, comp);
    ASSERT_TRUE(blob.ok());
    auto fd = MemFd(*blob);
    ASSERT_TRUE(fd.ok());
    const LayerCompression lc = comp == testing::Compression::kNone   ? LayerCompression::kNone
                                : comp == testing::Compression::kGzip ? LayerCompression::kGzip
                                                                      : LayerCompression::kZstd;
    auto reader = LayerReader::Open(fd->get(), blob->size(), lc, {}, "test");
    ASSERT_TRUE(reader.ok());
    LayerEntry e;
    ASSERT_TRUE(*(*reader)->Next(&e));
    EXPECT_EQ(e.kind, EntryKind::kDir);
    EXPECT_EQ(e.path, "d");
    EXPECT_EQ(e.mode, 0700u);
    EXPECT_EQ(e.uid, 5u);
    ASSERT_TRUE(*(*reader)->Next(&e));
    EXPECT_EQ(e.kind, EntryKind::kFile);
    std::string got;
    auto d = (*reader)->ReadData([&](const char* p, size_t n) {
      got.append(p, n);
      return Status::Ok();
    });
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(got, content);
    EXPECT_EQ(*d, Sha256Of(content));
    ASSERT_TRUE(*(*reader)->Next(&e));
    EXPECT_EQ(e.kind, EntryKind::kWhiteout);
    EXPECT_EQ(e.path, "d/gone");
    ASSERT_TRUE(*(*reader)->Next(&e));
    EXPECT_EQ(e.kind, EntryKind::kOpaque);
    EXPECT_EQ(e.path, "d");
    EXPECT_FALSE(*(*reader)->Next(&e));
    auto diff = (*reader)->Finish();
    ASSERT_TRUE(diff.ok()) << diff.status().ToString();
    EXPECT_EQ(*diff, Sha256Of(*tar));
  }
}

TEST(LayerReader, GzipBombIsCapped) {
  auto tar = testing::BuildLayerTar({testing::File("zeros", std::string(8 << 20, '\0'))});
  ASSERT_TRUE(tar.ok());
  auto blob = testing::Compress(*tar, testing::Compression::kGzip);
  auto fd = MemFd(*blob);
  LayerReadOptions o;
  o.max_uncompressed_bytes = 1 << 20;
  auto reader = LayerReader::Open(fd->get(), blob->size(), LayerCompression::kGzip, o, "bomb");
  ASSERT_TRUE(reader.ok());
  LayerEntry e;
  Status s;
  auto next = (*reader)->Next(&e);
  if (next.ok()) s = (*reader)->ReadData(nullptr).status();
  else s = next.status();
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
}

TEST(LayerReader, NamesAreBytesWhateverTheirCharset) {
  // Linux names are bytes. A layer carries UTF-8 names (in pax records or raw in GNU/ustar
  // headers) and names that are not UTF-8 at all; every one comes back byte for byte, whatever
  // the process's locale, and so do link targets.
  const std::string utf8 = "Fotanusitvany-\xc5\x91\xc3\xba.crt";  // "ő" "ú"
  const std::string latin1 = "caf\xe9";                                 // not UTF-8
  for (auto format : {testing::TarFormat::kPax, testing::TarFormat::kGnu}) {
    auto tar = testing::BuildLayerTar({testing::File(utf8, "x"), testing::File(latin1, "y"),
                                       testing::Symlink("s", utf8), testing::Hardlink("h", latin1)},
                                      format);
    ASSERT_TRUE(tar.ok()) << tar.status().ToString();
    auto fd = MemFd(*tar);
    ASSERT_TRUE(fd.ok());
    auto reader = LayerReader::Open(fd->get(), tar->size(), LayerCompression::kNone, {}, "names");
    ASSERT_TRUE(reader.ok());
    std::vector<std::pair<std::string, std::string>> got;
    LayerEntry e;
    for (;;) {
      auto next = (*reader)->Next(&e);
      ASSERT_TRUE(next.ok()) << next.status().ToString();
      if (!*next) break;
      got.emplace_back(e.path, e.link);
    }
    const std::vector<std::pair<std::string, std::string>> want = {
        {utf8, ""}, {latin1, ""}, {"s", utf8}, {"h", latin1}};
    EXPECT_EQ(got, want) << "format " << static_cast<int>(format);
  }
}

}  // namespace
}  // namespace lazyfs::index

namespace lazyfs::index {
namespace {

// A sink that wants no more stops the inflater: a span or a TOC that claims a huge output costs
// only what was read of it.
TEST(InflateTest, ASinkThatWantsNoMoreStopsTheInflater) {
  for (auto comp : {testing::Compression::kGzip, testing::Compression::kZstd}) {
    auto blob = testing::Compress(std::string(64 << 20, '\0'), comp);
    ASSERT_TRUE(blob.ok());
    const LayerCompression lc =
        comp == testing::Compression::kGzip ? LayerCompression::kGzip : LayerCompression::kZstd;
    auto inflater = Inflater::Open(lc, nullptr, false);
    ASSERT_TRUE(inflater.ok());
    uint64_t seen = 0;
    int calls = 0;
    ASSERT_TRUE(InflateAll(**inflater, *blob, [&](const char*, size_t n) {
                  seen += n;
                  ++calls;
                  return seen < (1 << 20);
                }).ok());
    EXPECT_LT(seen, uint64_t{2} << 20) << "inflated past what the sink wanted";
    auto span = InflateSpan(lc, nullptr, *blob, 100, 1000);
    ASSERT_TRUE(span.ok());
    EXPECT_EQ(*span, std::string(1000, '\0'));
  }
}

}  // namespace
}  // namespace lazyfs::index
