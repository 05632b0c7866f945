// eStargz and zstd:chunked layers written by a tool that is not lazyfs: tests/support/mkstargz,
// a small Go program over Debian's estargz package, built on first use with Debian's Go
// toolchain (offline, GOPATH mode). A missing toolchain or package is an error that says so.
#pragma once

#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/status.h"

namespace lazyfs::testing {

enum class StargzFormat { kEstargz, kZstdChunked };

struct StargzLayer {
  std::string blob;
  Digest toc_digest;  // sha256 of the TOC JSON: the containerd.io/snapshot/stargz/toc.digest value
  Digest diff_id;     // sha256 of the uncompressed stream (the tar, the TOC entry included)
};

// Path of the built mkstargz (built once per process into a temporary directory).
Result<std::string> MkstargzBinary();
// Converts an uncompressed layer tar (64 KiB chunks). `prioritized`: comma-separated tar names
// put first, before a prefetch landmark; empty: a .no.prefetch.landmark. `toc_lie`, when set,
// makes the TOC disagree with the tar stream it describes ("rename:OLD=NEW", "mode:NAME=OCTAL",
// or "digest:NAME=sha256:HEX" for a file of one chunk); the blob is otherwise well-formed.
Result<StargzLayer> MakeStargz(std::string_view tar, StargzFormat format,
                               const std::string& prioritized = "",
                               const std::string& toc_lie = "");

}  // namespace lazyfs::testing
