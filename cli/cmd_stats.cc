// lazyfs stats: what a running mount has fetched, served and cached, and how its reads failed.
//
// The daemon answers an ioctl on the mount's root with its counters as JSON (fs::ReadMountStats,
// fs/stats_channel.h says why that channel); this command picks the figures a user asks about,
// and prints them as text or as a stable JSON document.
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/stats.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/output.h"
#include "fs/fs.h"

namespace lazyfs::cli {
namespace {

struct StatsArgs {
  std::string mountpoint;
  bool json = false;
};

uint64_t CounterOf(const nlohmann::json& raw, std::string_view name) {
  const auto& c = raw.at("counters");
  auto it = c.find(std::string(name));
  return it == c.end() ? 0 : it->get<uint64_t>();
}

nlohmann::json LatencyOf(const nlohmann::json& raw, std::string_view name) {
  const auto& l = raw.at("latencies");
  auto it = l.find(std::string(name));
  if (it == l.end()) {
    return {{"count", 0}, {"p50_us", 0}, {"p90_us", 0}, {"p99_us", 0}, {"max_us", 0}};
  }
  return *it;
}

// The user-facing document: the figures by meaning, then every raw counter for the curious.
nlohmann::json Summary(const std::string& mountpoint, const nlohmann::json& raw) {
  const uint64_t hits = CounterOf(raw, kStatCacheHits), misses = CounterOf(raw, kStatCacheMisses);
  nlohmann::json j;
  j["mountpoint"] = mountpoint;
  j["image_compressed_bytes"] = CounterOf(raw, kStatImageBytes);
  j["bytes_fetched"] = CounterOf(raw, kStatBytesFetched);
  j["bytes_served"] = CounterOf(raw, kStatBytesServed);
  j["reads"] = CounterOf(raw, kStatReads);
  j["cache"] = {{"hits", hits},
                {"misses", misses},
                {"corrupt_dropped", CounterOf(raw, kStatCacheCorrupt)}};
  j["fetch"] = {{"requests", CounterOf(raw, kStatFetches)},
                {"retries", CounterOf(raw, kStatFetchRetries)},
                {"latency", LatencyOf(raw, kStatFetchLatency)}};
  j["eio"] = {{"unavailable", CounterOf(raw, kStatEioUnavailable)},
              {"data_loss", CounterOf(raw, kStatEioDataLoss)},
              {"other", CounterOf(raw, kStatEioOther)}};
  j["counters"] = raw.at("counters");
  j["latencies"] = raw.at("latencies");
  return j;
}

// "512 B", or "1.5 KiB (1536 B)": exact bytes beside the rounded figure.
std::string Bytes(uint64_t n) {
  if (n < 1024) return HumanBytes(n);
  return HumanBytes(n) + " (" + std::to_string(n) + " B)";
}

void PrintText(const nlohmann::json& j) {
  const uint64_t image = j["image_compressed_bytes"], fetched = j["bytes_fetched"];
  std::printf("mountpoint:     %s\n", j["mountpoint"].get<std::string>().c_str());
  std::printf("image size:     %s compressed\n", Bytes(image).c_str());
  std::printf("bytes fetched:  %s", Bytes(fetched).c_str());
  if (image > 0) {
    std::printf(" (%.2f%% of the image)", 100.0 * static_cast<double>(fetched) /
                                              static_cast<double>(image));
  }
  std::printf("\n");
  std::printf("bytes served:   %s in %" PRIu64 " reads\n",
              Bytes(j["bytes_served"]).c_str(), j["reads"].get<uint64_t>());
  std::printf("content cache:  %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
              " corrupt objects dropped\n",
              j["cache"]["hits"].get<uint64_t>(), j["cache"]["misses"].get<uint64_t>(),
              j["cache"]["corrupt_dropped"].get<uint64_t>());
  const auto& lat = j["fetch"]["latency"];
  std::printf("fetches:        %" PRIu64 " requests, %" PRIu64 " retries\n",
              j["fetch"]["requests"].get<uint64_t>(), j["fetch"]["retries"].get<uint64_t>());
  std::printf("fetch latency:  p50 %" PRIu64 " us, p90 %" PRIu64 " us, p99 %" PRIu64
              " us, max %" PRIu64 " us (%" PRIu64 " timed; to a factor of 2)\n",
              lat["p50_us"].get<uint64_t>(), lat["p90_us"].get<uint64_t>(),
              lat["p99_us"].get<uint64_t>(), lat["max_us"].get<uint64_t>(),
              lat["count"].get<uint64_t>());
  std::printf("EIO returned:   %" PRIu64 " registry unavailable, %" PRIu64
              " data failed verification, %" PRIu64 " other\n",
              j["eio"]["unavailable"].get<uint64_t>(), j["eio"]["data_loss"].get<uint64_t>(),
              j["eio"]["other"].get<uint64_t>());
}

Status Stats(const StatsArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(std::string text, fs::ReadMountStats(args.mountpoint));
  nlohmann::json raw = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (raw.is_discarded() || !raw.is_object() || !raw.contains("counters") ||
      !raw.contains("latencies")) {
    return DataLossError("the stats the daemon on " + args.mountpoint +
                         " sent are not the JSON lazyfs writes");
  }
  const nlohmann::json j = Summary(args.mountpoint, raw);
  if (args.json) {
    PrintJson(j);
  } else {
    PrintText(j);
  }
  return Status::Ok();
}

}  // namespace

void RegisterStats(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<StatsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "stats",
      "Show what a mount has fetched, served and cached\n\n"
      "Bytes fetched from the registry against the image's compressed size, bytes served to\n"
      "readers, content cache hits and misses, fetch count and latency percentiles, and the\n"
      "EIOs readers got, by cause. Any user who can open the mount's root may ask.\n"
      "Examples:\n"
      "  lazyfs stats /mnt/app\n"
      "  lazyfs stats --json /mnt/app");
  cmd->add_option("MOUNTPOINT", args->mountpoint, "A lazyfs mount")->required();
  cmd->add_flag("--json", args->json, "Print JSON instead of text");
  cmd->callback([args, &exit_code] {
    Status s = Stats(*args);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace lazyfs::cli
