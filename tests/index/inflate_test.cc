// The gzip inflaters side by side: igzip and zlib inflate the same streams to the same bytes,
// fail on the same damage, and every checkpoint igzip records resumes to the stream's bytes.
#include "index/inflate.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "index/checkpoint.h"

namespace lazyfs::index {
namespace {

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Text-like: words from a small vocabulary, so deflate finds matches and codes them dynamically.
std::string Words(size_t n, uint32_t seed) {
  static const char* const kWords[] = {"layer ", "image ", "tar ", "gzip ", "block ", "index ",
                                       "lazy ",  "fs ",    "etc/", "usr/", "bin/",  "\n"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < n) s += kWords[rng() % std::size(kWords)];
  s.resize(n);
  return s;
}

struct Deflate {
  int level = 6;
  int strategy = Z_DEFAULT_STRATEGY;
  size_t flush_every = 0;  // a Z_FULL_FLUSH (an empty stored block) every this many bytes
};

// One gzip member written by zlib.
std::string Gzip(std::string_view data, const Deflate& d = {}) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, d.level, Z_DEFLATED, 15 + 16, 8, d.strategy), Z_OK);
  std::string out;
  size_t pos = 0;
  int flush;
  do {
    const size_t n = std::min(data.size() - pos, d.flush_every ? d.flush_every : data.size());
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + pos));
    zs.avail_in = static_cast<uInt>(n);
    pos += n;
    flush = pos == data.size() ? Z_FINISH : Z_FULL_FLUSH;
    int rc;
    do {
      char buf[1 << 16];
      zs.next_out = reinterpret_cast<Bytef*>(buf);
      zs.avail_out = sizeof(buf);
      rc = deflate(&zs, flush);
      out.append(buf, sizeof(buf) - zs.avail_out);
    } while (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  } while (flush != Z_FINISH);
  deflateEnd(&zs);
  return out;
}

struct Stream {
  std::string name;
  std::string data;  // what it inflates to
  std::string gz;
};

std::vector<Stream> Streams() {
  std::vector<Stream> s;
  const std::string words = Words(3 << 20, 1), random = RandomBytes(2 << 20, 2);
  s.push_back({"compressible", words, Gzip(words)});
  s.push_back({"random", random, Gzip(random)});
  s.push_back({"stored", words.substr(0, 1 << 20), Gzip(words.substr(0, 1 << 20), {.level = 0})});
  s.push_back({"fixed", words.substr(0, 1 << 20),
               Gzip(words.substr(0, 1 << 20), {.strategy = Z_FIXED})});
  s.push_back({"huffman-only", random.substr(0, 512 << 10) + words.substr(0, 512 << 10),
               Gzip(random.substr(0, 512 << 10) + words.substr(0, 512 << 10),
                    {.strategy = Z_HUFFMAN_ONLY})});
  s.push_back({"flushed", words.substr(0, 1 << 20),
               Gzip(words.substr(0, 1 << 20), {.flush_every = 10000})});
  const std::string a = Words(700 << 10, 3), b = RandomBytes(300 << 10, 4), c = Words(5, 5);
  s.push_back({"multi-member", a + b + c, Gzip(a) + Gzip(b) + Gzip("") + Gzip(c) + Gzip("")});
  s.push_back({"empty", "", Gzip("")});
  s.push_back({"empty-members", "", Gzip("") + Gzip("")});
  return s;
}

InflateOptions Engine(GzipEngine e, bool boundaries = false, uint64_t every = 64 << 10) {
  InflateOptions o;
  o.gzip = e;
  o.boundaries = boundaries;
  o.boundary_every_compressed = o.boundary_every_uncompressed = every;
  return o;
}

struct Inflated {
  Status status;
  bool complete = false;
  std::string out;
  std::vector<Checkpoint> checkpoints;
};

// Inflates as LayerReader does: input in pieces of `feed` bytes, output in pieces of
// `out_size`, boundaries to a CheckpointRecorder.
Inflated InflateLikeTheReader(std::string_view gz, const InflateOptions& o, size_t feed = 1 << 20,
                              size_t out_size = 1 << 20) {
  Inflated r;
  auto inflater = Inflater::Open(LayerCompression::kGzip, nullptr, o);
  if (!inflater.ok()) {
    r.status = inflater.status();
    return r;
  }
  CheckpointRecorder rec(o.boundary_every_uncompressed, o.boundary_every_compressed, true);
  std::string buf(out_size, '\0');
  size_t in_pos = 0;
  for (;;) {
    size_t produced = 0;
    bool ended = false;
    while (produced < buf.size()) {
      const std::string_view in = gz.substr(in_pos, std::min(feed, gz.size() - in_pos));
      auto step = (*inflater)->Inflate(in, std::span<char>(buf).subspan(produced));
      if (!step.ok()) {
        r.status = step.status();
        return r;
      }
      in_pos += step->consumed;
      if (step->boundary) rec.AtBoundary(buf, produced + step->produced, r.out.size(), in_pos,
                                         step->bits);
      produced += step->produced;
      if (in.empty() && step->produced == 0) {
        ended = true;
        break;
      }
    }
    rec.Saw(std::string_view(buf.data(), produced));
    r.out.append(buf.data(), produced);
    if (ended) break;
  }
  r.complete = (*inflater)->complete();
  r.checkpoints = rec.Take(r.out.size());
  return r;
}

// From `cp` to the end of the stream, by the resume path with engine `e`.
Result<std::string> Resume(const Checkpoint& cp, std::string_view gz, GzipEngine e) {
  LAZYFS_ASSIGN_OR_RETURN(auto inflater, Inflater::Open(LayerCompression::kGzip, &cp, Engine(e)));
  std::string out;
  LAZYFS_RETURN_IF_ERROR(InflateAll(*inflater, gz.substr(SpanStart(&cp)), [&](const char* p,
                                                                              size_t n) {
    out.append(p, n);
    return true;
  }));
  return out;
}

TEST(InflateEngines, DefaultFollowsTheEnvironment) {
  auto inflater = Inflater::Open(LayerCompression::kGzip, nullptr, false);
  ASSERT_TRUE(inflater.ok());
  const char* env = std::getenv("LAZYFS_INFLATE");
  const bool zlib = !IsalAvailable() || (env && std::string_view(env) == "zlib");
  EXPECT_EQ((*inflater)->engine(), zlib ? "zlib" : "igzip");
  auto forced = Inflater::Open(LayerCompression::kGzip, nullptr, Engine(GzipEngine::kZlib));
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ((*forced)->engine(), "zlib");
}

#ifdef LAZYFS_HAVE_ISAL

TEST(InflateEngines, SameBytesFromEveryStream) {
  for (const Stream& s : Streams()) {
    for (const bool boundaries : {false, true}) {
      for (const size_t feed : {size_t{1} << 20, size_t{4099}, size_t{1}}) {
        if (feed == 1 && s.gz.size() > (256 << 10)) continue;  // byte by byte: small ones only
        SCOPED_TRACE(s.name + " feed " + std::to_string(feed) + (boundaries ? " boundaries" : ""));
        for (const GzipEngine e : {GzipEngine::kZlib, GzipEngine::kIsal}) {
          const Inflated r = InflateLikeTheReader(s.gz, Engine(e, boundaries), feed, 100003);
          ASSERT_TRUE(r.status.ok()) << r.status.ToString();
          EXPECT_TRUE(r.complete);
          EXPECT_TRUE(r.out == s.data) << "engine " << (e == GzipEngine::kIsal ? "igzip" : "zlib");
        }
      }
    }
  }
}

// Every checkpoint igzip records resumes, by either engine, to exactly the stream's bytes
// from there; and they come about as often as zlib's.
TEST(InflateEngines, IsalCheckpointsResume) {
  for (const Stream& s : Streams()) {
    for (const size_t feed : {size_t{1} << 20, size_t{65537}}) {
      SCOPED_TRACE(s.name + " feed " + std::to_string(feed));
      const Inflated isal = InflateLikeTheReader(s.gz, Engine(GzipEngine::kIsal, true), feed);
      const Inflated zlib = InflateLikeTheReader(s.gz, Engine(GzipEngine::kZlib, true), feed);
      ASSERT_TRUE(isal.status.ok()) << isal.status.ToString();
      ASSERT_TRUE(zlib.status.ok()) << zlib.status.ToString();
      if (s.name == "compressible" || s.name == "random" || s.name == "stored" ||
          s.name == "flushed") {
        EXPECT_GE(isal.checkpoints.size() * 2, zlib.checkpoints.size())
            << "igzip found far fewer boundaries than zlib";
        EXPECT_GT(isal.checkpoints.size(), 3u);
      }
      for (const Checkpoint& cp : isal.checkpoints) {
        SCOPED_TRACE("checkpoint at " + std::to_string(cp.uncompressed) + "/" +
                     std::to_string(cp.compressed) + "." + std::to_string(cp.bits));
        for (const GzipEngine e : {GzipEngine::kZlib, GzipEngine::kIsal}) {
          auto rest = Resume(cp, s.gz, e);
          ASSERT_TRUE(rest.ok()) << rest.status().ToString();
          ASSERT_TRUE(*rest == std::string_view(s.data).substr(cp.uncompressed));
        }
      }
    }
  }
}

// Damage fails under igzip as under zlib: the same code, the same kind of message.
TEST(InflateEngines, DamageFailsTheSame) {
  const std::string data = Words(300 << 10, 7);
  const std::string gz = Gzip(data);
  auto flip = [&](size_t at) {
    std::string g = gz;
    g[at] = static_cast<char>(g[at] ^ 0x20);
    return g;
  };
  struct Case {
    std::string name, gz;
    std::string error;  // "" for a truncated stream (incomplete, no error)
  };
  const std::vector<Case> cases = {
      {"bad crc", flip(gz.size() - 6), "corrupt gzip stream ("},
      {"bad isize", flip(gz.size() - 3), "corrupt gzip stream ("},
      {"bad body", flip(gz.size() / 2), "corrupt gzip stream ("},
      {"bad header", flip(0), "corrupt gzip stream (incorrect header check)"},
      {"garbage after the member", gz + "garbage!", "corrupt gzip stream (incorrect header check)"},
      {"truncated body", gz.substr(0, gz.size() / 2), ""},
      {"truncated trailer", gz.substr(0, gz.size() - 3), ""},
      {"truncated next header", gz + gz.substr(0, 5), ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    for (const bool boundaries : {false, true}) {
      for (const GzipEngine e : {GzipEngine::kZlib, GzipEngine::kIsal}) {
        const Inflated r = InflateLikeTheReader(c.gz, Engine(e, boundaries), 5000);
        if (c.error.empty()) {
          EXPECT_TRUE(r.status.ok()) << r.status.ToString();
          EXPECT_FALSE(r.complete);
        } else {
          ASSERT_FALSE(r.status.ok());
          EXPECT_EQ(r.status.code(), StatusCode::kDataLoss);
          EXPECT_EQ(r.status.message().rfind(c.error, 0), 0u) << r.status.message();
        }
      }
    }
  }
}

// A bomb costs no more than the output buffer per call: the caller's caps stop it.
TEST(InflateEngines, ABombStopsAtTheCallersCap) {
  const std::string gz = Gzip(std::string(256 << 20, '\0'), {.level = 9});
  auto inflater = Inflater::Open(LayerCompression::kGzip, nullptr, Engine(GzipEngine::kIsal, true));
  ASSERT_TRUE(inflater.ok());
  std::string buf(1 << 20, '\0');
  auto step = (*inflater)->Inflate(gz, buf);
  ASSERT_TRUE(step.ok());
  EXPECT_LE(step->produced, buf.size());
  uint64_t seen = 0;
  ASSERT_TRUE(InflateAll(**inflater, gz.substr(step->consumed), [&](const char*, size_t n) {
                seen += n;
                return seen < (8 << 20);
              }).ok());
  EXPECT_LT(seen, uint64_t{9} << 20);
}

#endif  // LAZYFS_HAVE_ISAL

}  // namespace
}  // namespace lazyfs::index
