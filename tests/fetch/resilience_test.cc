// The registry client against failures: a fault-injecting proxy (tests/support/fault_proxy.h) in
// front of Debian's real docker-registry resets and closes connections mid-blob, answers 503 and
// 429, stalls, and records every request, so each test proves what travelled.
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/cas_dir.h"
#include "base/deadline.h"
#include "base/stats.h"
#include "fetch/fetch.h"
#include "fetch/registry_client.h"
#include "tests/fetch/registry_fixture.h"
#include "tests/fetch/test_layout.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/registry.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;
using lazyfs::testing::FaultProxy;
using lazyfs::testing::FaultRule;
using testing::Blob;
using testing::LayoutWriter;
using testing::RefName;
using testing::TempDir;

// Bytes that do not repeat, so a splice at the wrong offset cannot hash right by accident.
std::string Pattern(size_t size, uint32_t seed) { return lazyfs::testing::PseudoRandomBytes(size, seed); }

FaultRule Rule(const std::string& path, FaultRule::Action action, int times = 1) {
  FaultRule r;
  r.path_contains = path;
  r.action = action;
  r.times = times;
  return r;
}

FaultRule Cut(const std::string& path, FaultRule::Action action, uint64_t after_bytes) {
  FaultRule r = Rule(path, action);
  r.after_bytes = after_bytes;
  r.method = "GET";
  return r;
}

FaultRule Answer(const std::string& path, int status, int times,
                 const std::string& retry_after = "") {
  FaultRule r = Rule(path, FaultRule::Action::kStatus, times);
  r.status = status;
  r.retry_after = retry_after;
  return r;
}

std::string ReadAll(const Fd& fd) {
  struct stat st;
  EXPECT_EQ(::fstat(fd.get(), &st), 0);
  std::string out(static_cast<size_t>(st.st_size), '\0');
  auto n = PreadFull(fd.get(), out.data(), out.size(), 0);
  EXPECT_TRUE(n.ok());
  return out;
}

class ResilienceTest : public testing::SharedRegistryTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(SharedRegistryTest::SetUp());
    auto p = FaultProxy::Start(registry_->host());
    ASSERT_TRUE(p.ok()) << p.status().message();
    proxy_ = std::move(*p);
  }

  // Pushes an image of `layers` straight to the registry as REPO:v1.
  Blob Push(const std::string& repo, const std::vector<std::string>& layers) {
    LayoutWriter w(tmp_.path() + "/layout-" + std::to_string(++pushes_));
    Blob manifest = w.AddImage(layers, "amd64");
    w.WriteIndex({{manifest, RefName("t")}});
    Status s = lazyfs::testing::PushOciLayout(w.dir(), "t", registry_->host(), repo, "v1");
    EXPECT_TRUE(s.ok()) << s.message();
    return manifest;
  }

  SourceOptions Options() const {
    SourceOptions o;
    o.store = StoreLayout{store_};
    o.docker_config = "/nonexistent";
    o.connect_timeout_s = 5;
    o.low_speed_timeout_s = 10;
    o.retry_initial_delay_ms = 20;
    o.platform = *Platform::Parse("linux/amd64");
    return o;
  }

  // Opens REPO:v1 through the proxy.
  std::unique_ptr<ImageSource> Open(const std::string& repo, const SourceOptions& options) {
    auto ref = ImageRef::Parse("docker://" + proxy_->host() + "/" + repo + ":v1");
    EXPECT_TRUE(ref.ok());
    auto source = OpenImageSource(*ref, options);
    EXPECT_TRUE(source.ok()) << source.status().message();
    return source.ok() ? std::move(*source) : nullptr;
  }

  // Pushes one layer as REPO:v1 and resolves it through the proxy with `options`.
  std::unique_ptr<ImageSource> Resolved(const std::string& repo, const std::string& layer,
                                        const SourceOptions& options) {
    Push(repo, {layer});
    auto source = Open(repo, options);
    if (!source) return nullptr;
    Result<ImageDescriptor> image = source->Resolve();
    EXPECT_TRUE(image.ok()) << image.status().message();
    return image.ok() ? std::move(source) : nullptr;
  }

  // An Unavailable error that names the registry (the proxy) and the blob.
  void ExpectUnavailableNaming(const Status& s, const Digest& digest) {
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    EXPECT_THAT(s.message(), HasSubstr("registry " + proxy_->host()));
    EXPECT_THAT(s.message(), HasSubstr(digest.ToString()));
  }

  // Runs `f`; one still running after 30 s (a hang guard, not a timing) fails the test and is
  // ended by stopping the proxy.
  template <typename F>
  auto WithinHangGuard(F f) -> decltype(f()) {
    auto running = std::async(std::launch::async, std::move(f));
    if (running.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "still running after 30 s: the dripping registry holds it";
      proxy_->Stop();
    }
    return running.get();
  }

  TempDir tmp_;
  std::string store_ = tmp_.path() + "/store";
  std::unique_ptr<FaultProxy> proxy_;
  int pushes_ = 0;
};


TEST_F(ResilienceTest, BrokenBlobDownloadResumesWithoutRefetching) {
  const std::string layer = Pattern(3 << 20, 1);
  const Digest digest = Sha256Of(layer);
  Push("res/resume", {layer});
  constexpr uint64_t kCut = 1'000'000;
  struct Case {
    FaultRule::Action action;
    const char* fault;
  };
  for (const Case& c : {Case{FaultRule::Action::kReset, "reset"},
                        Case{FaultRule::Action::kClose, "close"}}) {
    SCOPED_TRACE(c.fault);
    ASSERT_TRUE(RemoveTree(store_).ok());
    proxy_->AddRule(Cut("/blobs/" + digest.ToString(), c.action, kCut));
    const size_t before = proxy_->RequestsFor(digest.ToString()).size();
    auto source = Open("res/resume", Options());
    ASSERT_NE(source, nullptr);
    auto image = source->Resolve();
    ASSERT_TRUE(image.ok()) << image.status().message();
    auto fd = source->OpenBlob(digest, layer.size());
    ASSERT_TRUE(fd.ok()) << fd.status().message();
    EXPECT_TRUE(ReadAll(*fd) == layer) << "the stored blob differs from the pushed one";

    auto requests = proxy_->RequestsFor(digest.ToString());
    ASSERT_EQ(requests.size() - before, 2u);
    const auto& broken = requests[before];
    const auto& resumed = requests[before + 1];
    EXPECT_EQ(broken.fault, c.fault);
    EXPECT_EQ(broken.body_bytes, kCut);
    EXPECT_EQ(broken.Header("Range"), "");
    // The second request asks only for what the first did not deliver (what the client had
    // read before the cut; a reset may lose bytes still in flight, a clean close does not).
    const std::string range = resumed.Header("Range");
    ASSERT_TRUE(range.starts_with("bytes=") && range.ends_with("-")) << range;
    const uint64_t from = std::stoull(range.substr(6));
    EXPECT_GT(from, 0u);
    EXPECT_LE(from, kCut);
    if (c.action == FaultRule::Action::kClose) {
      EXPECT_EQ(from, kCut);
    }
    EXPECT_EQ(resumed.status, 206);
    EXPECT_EQ(resumed.body_bytes, layer.size() - from);
    EXPECT_LE(broken.body_bytes + resumed.body_bytes, layer.size() + kCut);
  }
}

TEST_F(ResilienceTest, RetriesOn503And429HonouringRetryAfter) {
  const std::string layer = Pattern(200'000, 2);
  const Digest digest = Sha256Of(layer);
  Blob manifest = Push("res/retry", {layer});
  proxy_->AddRule(Answer("/manifests/v1", 503, 2));
  proxy_->AddRule(Answer("/blobs/" + digest.ToString(), 429, 1, "1"));
  proxy_->AddRule(Answer("/blobs/" + digest.ToString(), 502, 1));
  auto source = Open("res/retry", Options());
  ASSERT_NE(source, nullptr);
  auto image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->manifest_digest, manifest.digest);
  auto fd = source->OpenBlob(digest, layer.size());
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_TRUE(ReadAll(*fd) == layer);

  auto manifests = proxy_->RequestsFor("/manifests/v1");
  ASSERT_EQ(manifests.size(), 3u);
  EXPECT_EQ(manifests[0].status, 503);
  EXPECT_EQ(manifests[1].status, 503);
  EXPECT_EQ(manifests[2].status, 200);
  auto blobs = proxy_->RequestsFor(digest.ToString());
  ASSERT_EQ(blobs.size(), 3u);
  EXPECT_EQ(blobs[0].status, 429);
  EXPECT_EQ(blobs[1].status, 502);
  EXPECT_EQ(blobs[2].status, 200);
}

TEST_F(ResilienceTest, PersistentFailureGivesUpWithTheLastError) {
  const std::string layer = Pattern(1000, 3);
  const Digest digest = Sha256Of(layer);
  Push("res/giveup", {layer});
  proxy_->AddRule(Answer("/blobs/" + digest.ToString(), 503, -1));
  SourceOptions options = Options();
  options.max_attempts = 3;
  auto source = Open("res/giveup", options);
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resolve().ok());
  auto fd = source->OpenBlob(digest, layer.size());
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(fd.status().message(), HasSubstr("registry " + proxy_->host()));
  EXPECT_THAT(fd.status().message(), HasSubstr("HTTP 503"));
  EXPECT_EQ(proxy_->RequestsFor(digest.ToString()).size(), 3u);
  auto store = CasDir::Open(store_ + "/blobs");
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->Contains(digest));
}

TEST_F(ResilienceTest, StalledServerTimesOutNamingTheRegistry) {
  const std::string layer = Pattern(5000, 4);
  const Digest digest = Sha256Of(layer);
  Push("res/stall", {layer});
  SourceOptions options = Options();
  options.low_speed_timeout_s = 1;
  options.max_attempts = 2;
  auto source = Open("res/stall", options);
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resolve().ok());
  proxy_->AddRule(Rule("/blobs/" + digest.ToString(), FaultRule::Action::kStall, -1));
  auto fd = source->OpenBlob(digest, layer.size());
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(fd.status().message(), HasSubstr("registry " + proxy_->host()));
  EXPECT_THAT(fd.status().message(), HasSubstr("timed out"));
  EXPECT_THAT(fd.status().message(), HasSubstr("gave up after 2 attempts"));
  EXPECT_EQ(proxy_->RequestsFor(digest.ToString()).size(), 2u);

  std::array<std::byte, 16> buf;
  auto n = source->ReadBlobRange(digest, 0, buf, Deadline::Never());
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("timed out"));
}

// A rule that makes the registry send the blob's bytes one every `interval_ms`.
FaultRule Drip(const Digest& digest, int interval_ms = 1000) {
  FaultRule r = Rule("/blobs/" + digest.ToString(), FaultRule::Action::kDrip, -1);
  r.method = "GET";
  r.drip_interval_ms = interval_ms;
  return r;
}

// A registry that sends a few bytes a second is below any sane minimum rate, yet above the
// 1 byte/s curl's low-speed check once took for one: the download fails (each attempt at the
// low-speed check) instead of taking a second per four bytes of the blob.
TEST_F(ResilienceTest, ADrippingRegistryFailsAWholeBlobAtTheMinimumRate) {
  const std::string layer = Pattern(5000, 10);
  const Digest digest = Sha256Of(layer);
  SourceOptions options = Options();
  options.min_rate_bps = 100;
  options.low_speed_timeout_s = 2;
  options.max_attempts = 2;
  auto source = Resolved("res/drip", layer, options);
  ASSERT_NE(source, nullptr);
  proxy_->AddRule(Drip(digest, /*interval_ms=*/250));
  auto fd = WithinHangGuard([&] { return source->OpenBlob(digest, layer.size()); });
  ASSERT_FALSE(fd.ok());
  ExpectUnavailableNaming(fd.status(), digest);
  EXPECT_THAT(fd.status().message(), HasSubstr("timed out"));
  auto store = CasDir::Open(store_ + "/blobs");
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->Contains(digest));
}

// Bursts can keep a transfer above the minimum rate as curl measures it; the download as a whole
// still ends at the time its declared size takes at that rate, plus the slack.
TEST_F(ResilienceTest, AWholeBlobDownloadEndsAtTheCapItsSizeSets) {
  const std::string layer = Pattern(200, 11);
  const Digest digest = Sha256Of(layer);
  SourceOptions options = Options();
  options.min_rate_bps = 100;
  options.low_speed_timeout_s = 600;  // only the cap can end it within the hang guard
  options.blob_deadline_slack_s = 2;
  auto source = Resolved("res/cap", layer, options);
  ASSERT_NE(source, nullptr);
  proxy_->AddRule(Drip(digest));
  auto fd = WithinHangGuard([&] { return source->OpenBlob(digest, layer.size()); });
  ASSERT_FALSE(fd.ok());
  ExpectUnavailableNaming(fd.status(), digest);
  EXPECT_THAT(fd.status().message(), HasSubstr("did not finish within 4 s"));
}

TEST(DownloadTimeLimitTest, SizeAtTheMinimumRatePlusSlackNeverOverflows) {
  SourceOptions o;
  o.min_rate_bps = 1000;
  o.blob_deadline_slack_s = 300;
  struct Case {
    uint64_t size;
    int64_t seconds;
  };
  constexpr int64_t kMonth = 30ll * 24 * 3600;
  for (const Case& c : {Case{0, 300}, Case{1, 301}, Case{1000, 301}, Case{1001, 302},
                        Case{1'000'000'000, 1'000'300}, Case{UINT64_MAX, kMonth}}) {
    SCOPED_TRACE(c.size);
    EXPECT_EQ(DownloadTimeLimit(c.size, o).count(), c.seconds);
  }
  o.min_rate_bps = 0;  // nonsense is taken as 1 byte/s, not a division by zero
  o.blob_deadline_slack_s = -5;
  EXPECT_EQ(DownloadTimeLimit(10, o).count(), 10);
  // The limit always fits a Deadline.
  EXPECT_FALSE(Deadline::In(DownloadTimeLimit(UINT64_MAX, o)).expired());
}

// A range read carries its reader's deadline; a drip does not stretch it.
TEST_F(ResilienceTest, ADrippingRangeReadEndsAtItsDeadline) {
  const std::string layer = Pattern(50'000, 12);
  const Digest digest = Sha256Of(layer);
  SourceOptions options = Options();
  options.low_speed_timeout_s = 600;
  auto source = Resolved("res/dripread", layer, options);
  ASSERT_NE(source, nullptr);
  proxy_->AddRule(Drip(digest));
  std::vector<std::byte> buf(1000);
  auto n = WithinHangGuard([&] {
    return source->ReadBlobRange(digest, 0, buf, Deadline::In(std::chrono::seconds(2)));
  });
  ASSERT_FALSE(n.ok());
  ExpectUnavailableNaming(n.status(), digest);
  EXPECT_THAT(n.status().message(), HasSubstr("gave up at the read deadline"));
}

TEST_F(ResilienceTest, ReadBlobRangeIsARangeRequestAndResumes) {
  const std::string layer = Pattern(500'000, 5);
  const Digest digest = Sha256Of(layer);
  Push("res/range", {layer});
  auto source = Open("res/range", Options());
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resolve().ok());
  proxy_->AddRule(Cut("/blobs/" + digest.ToString(), FaultRule::Action::kClose, 30'000));
  std::vector<std::byte> buf(100'000);
  auto n = source->ReadBlobRange(digest, 123'456, buf, Deadline::Never());
  ASSERT_TRUE(n.ok()) << n.status().message();
  ASSERT_EQ(*n, buf.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), buf.size()),
            layer.substr(123'456, buf.size()));
  auto requests = proxy_->RequestsFor(digest.ToString());
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].Header("Range"), "bytes=123456-223455");
  EXPECT_EQ(requests[1].Header("Range"), "bytes=153456-223455");
  EXPECT_EQ(requests[0].body_bytes + requests[1].body_bytes, buf.size());

  // At the end of the blob: fewer bytes, then none.
  n = source->ReadBlobRange(digest, layer.size() - 10, buf, Deadline::Never());
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 10u);
  n = source->ReadBlobRange(digest, layer.size(), buf, Deadline::Never());
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 0u);
}

// Seconds since `start`, for messages.
double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST_F(ResilienceTest, AStalledRangeReadGivesUpAtItsDeadline) {
  const std::string layer = Pattern(50'000, 6);
  const Digest digest = Sha256Of(layer);
  Push("res/deadline", {layer});
  auto source = Open("res/deadline", Options());  // a stalled transfer alone fails after 10 s
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resolve().ok());
  proxy_->AddRule(Rule("/blobs/" + digest.ToString(), FaultRule::Action::kStall, -1));
  const uint64_t retries_before = Counter(kStatFetchRetries).Get();
  std::array<std::byte, 16> buf;
  const auto start = Clock::now();
  auto n = source->ReadBlobRange(digest, 100, buf, Deadline::In(std::chrono::seconds(1)));
  const double took = SecondsSince(start);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(n.status().message(), HasSubstr("registry " + proxy_->host()));
  EXPECT_THAT(n.status().message(), HasSubstr(digest.ToString()));
  EXPECT_THAT(n.status().message(), HasSubstr("gave up at the read deadline"));
  EXPECT_LT(took, 5.0) << "the read outlived its 1 s deadline: " << n.status().message();
  // The stalled transfer was the only attempt: none starts once the deadline has passed.
  EXPECT_EQ(proxy_->RequestsFor(digest.ToString()).size(), 1u);
  EXPECT_EQ(Counter(kStatFetchRetries).Get(), retries_before);
}

TEST_F(ResilienceTest, ACancelledReadEndsItsStalledTransferPromptly) {
  const std::string layer = Pattern(50'000, 7);
  const Digest digest = Sha256Of(layer);
  Push("res/cancel", {layer});
  auto source = Open("res/cancel", Options());
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resolve().ok());
  proxy_->AddRule(Rule("/blobs/" + digest.ToString(), FaultRule::Action::kStall, -1));
  Canceller canceller;
  std::array<std::byte, 16> buf;
  // No time limit: only the Canceller can end this read before the stall timeout would.
  auto read = std::async(std::launch::async, [&] {
    return source->ReadBlobRange(digest, 0, buf, canceller.Never());
  });
  const auto waiting_since = Clock::now();
  while (proxy_->RequestsFor(digest.ToString()).empty() && SecondsSince(waiting_since) < 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(proxy_->RequestsFor(digest.ToString()).size(), 1u) << "the read never reached the proxy";
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // well inside the transfer
  const auto cancelled_at = Clock::now();
  canceller.Cancel();
  auto n = read.get();
  const double took = SecondsSince(cancelled_at);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(n.status().message(), HasSubstr(digest.ToString()));
  EXPECT_THAT(n.status().message(), HasSubstr("cancelled"));
  EXPECT_THAT(n.status().message(), Not(HasSubstr("timed out")));
  EXPECT_LT(took, 3.0) << "the transfer outlived its Canceller";
  EXPECT_EQ(proxy_->RequestsFor(digest.ToString()).size(), 1u) << "a cancelled read retried";
}

TEST_F(ResilienceTest, DroppedConnectionsAreRetriedWithinTheDeadlineAndCountedOnce) {
  const std::string layer = Pattern(200'000, 8);
  const Digest digest = Sha256Of(layer);
  Push("res/drops", {layer});
  auto source = Open("res/drops", Options());
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resolve().ok());
  // The first three range requests get their response line, then a reset.
  FaultRule drop = Cut("/blobs/" + digest.ToString(), FaultRule::Action::kReset, 0);
  drop.times = 3;
  proxy_->AddRule(drop);
  const uint64_t retries_before = Counter(kStatFetchRetries).Get();
  std::vector<std::byte> buf(50'000);
  const auto start = Clock::now();
  auto n = source->ReadBlobRange(digest, 1000, buf, Deadline::In(std::chrono::seconds(20)));
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_LT(SecondsSince(start), 20.0);
  ASSERT_EQ(*n, buf.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), buf.size()),
            layer.substr(1000, buf.size()));
  auto requests = proxy_->RequestsFor(digest.ToString());
  ASSERT_EQ(requests.size(), 4u);
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(requests[i].Header("Range"), "bytes=1000-50999");
    EXPECT_EQ(requests[i].fault, i < 3 ? "reset" : "");
  }
  EXPECT_EQ(Counter(kStatFetchRetries).Get() - retries_before, 3u);
}

TEST_F(ResilienceTest, RetriesOfAFailingRangeReadStopAtItsDeadline) {
  const std::string layer = Pattern(10'000, 9);
  const Digest digest = Sha256Of(layer);
  Push("res/busy", {layer});
  SourceOptions options = Options();
  options.max_attempts = 1000;  // only the deadline ends it
  options.retry_max_delay_ms = 200;
  auto source = Open("res/busy", options);
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resolve().ok());
  proxy_->AddRule(Answer("/blobs/" + digest.ToString(), 503, -1));
  std::array<std::byte, 16> buf;
  const auto start = Clock::now();
  auto n = source->ReadBlobRange(digest, 0, buf, Deadline::In(std::chrono::milliseconds(1500)));
  const double took = SecondsSince(start);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(n.status().message(), HasSubstr("gave up at the read deadline after "));
  EXPECT_THAT(n.status().message(), HasSubstr("(last error: HTTP 503)"));
  EXPECT_LT(took, 5.0);
  EXPECT_GT(proxy_->RequestsFor(digest.ToString()).size(), 2u) << "it did not retry";
}

TEST_F(ResilienceTest, ManyLayersInParallelOverReusedConnections) {
  std::vector<std::string> layers;
  for (uint32_t i = 0; i < 12; ++i) layers.push_back(Pattern(300'000 + i, 100 + i));
  Push("res/parallel", layers);
  auto source = Open("res/parallel", Options());
  ASSERT_NE(source, nullptr);
  auto image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  ASSERT_EQ(image->layers.size(), layers.size());
  // Every layer is broken once mid-way as well: each resumes on a fresh connection.
  for (const LayerDescriptor& l : image->layers) {
    proxy_->AddRule(Cut("/blobs/" + l.digest.ToString(), FaultRule::Action::kClose, 100'000));
  }
  const int connections_before = proxy_->connections();
  std::atomic<size_t> next{0};
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (size_t i; (i = next++) < layers.size();) {
        auto fd = source->OpenBlob(image->layers[i].digest, image->layers[i].size);
        if (fd.ok() && ReadAll(*fd) == layers[i]) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 12);
  // 24 blob requests (12 broken, 12 resumed): the 12 broken connections are gone, the resumed
  // requests reuse the 4 workers' connections.
  size_t blob_requests = 0;
  for (const auto& r : proxy_->Requests()) blob_requests += r.target.find("/blobs/") != std::string::npos;
  EXPECT_GE(blob_requests, 24u);
  const int opened = proxy_->connections() - connections_before;
  EXPECT_LE(opened, 12 + 4);
  EXPECT_LT(static_cast<size_t>(opened), blob_requests);

  // Sequentially, one connection carries everything.
  const int before_seq = proxy_->connections();
  ASSERT_TRUE(RemoveTree(store_ + "/blobs/sha256").ok());
  auto again = Open("res/parallel", Options());
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(again->Resolve().ok());
  for (size_t i = 0; i < layers.size(); ++i) {
    ASSERT_TRUE(again->OpenBlob(image->layers[i].digest, image->layers[i].size).ok());
  }
  // One for the HTTPS probe a loopback registry gets, one for all the rest.
  EXPECT_LE(proxy_->connections() - before_seq, 2);
}

}  // namespace
}  // namespace lazyfs::fetch
