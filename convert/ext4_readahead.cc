#include "convert/ext4_readahead.h"

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include "base/digest.h"
#include "convert/ext4_layout.h"

namespace lazyfs::convert {
namespace {

// Full-size buffers kept for reuse: enough for the writer's piece and one being filled.
constexpr size_t kMaxSpare = 2;

uint64_t RoundUpToBlock(uint64_t bytes) { return (bytes + kBlockSize - 1) / kBlockSize * kBlockSize; }

}  // namespace

// One file being read: the hash runs over its pieces in order, so a file is read by one thread.
struct ContentReader::FileState {
  explicit FileState(size_t index, const FileToRead& f)
      : index(index), ino(f.ino), size(f.size), sparse(f.sparse), data(f.data) {
    SkipHoles();
  }
  size_t index;
  uint64_t ino;
  uint64_t size;
  uint64_t off = 0;
  bool started = false;
  Digest want;
  Sha256 hash;
  // Sparse files: off is always at a data chunk (or the end); each chunk's digest so far.
  bool sparse;
  index::Extents data;
  size_t extent = 0;
  std::vector<Digest> chunks;

  // Moves off past the chunks no data extent touches, counting them as zero chunks.
  void SkipHoles() {
    if (!sparse) return;
    while (off < size) {
      const uint64_t len = std::min(index::kContentChunkSize, size - off);
      while (extent < data.size() && data[extent].second <= off) ++extent;
      if (extent < data.size() && data[extent].first < off + len) return;
      chunks.push_back(index::ZeroChunkDigest(len));
      off += len;
    }
  }
};

ContentReader::ContentReader(const index::Tree& tree, std::vector<FileToRead> files,
                             unsigned threads, uint64_t window_bytes)
    : tree_(tree), files_(std::move(files)), window_(window_bytes) {
  if (threads <= 1 || files_.empty()) return;
  threads_.reserve(threads);
  for (unsigned t = 0; t < threads; ++t) {
    try {
      threads_.emplace_back([this] { ReaderLoop(); });
    } catch (const std::system_error&) {
      break;  // fewer readers (none: Next reads inline)
    }
  }
}

ContentReader::~ContentReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  readers_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

uint64_t ContentReader::PieceCost(uint64_t bytes) {
  // An empty file still takes a queue entry: charge a block so the window bounds their number.
  return std::max<uint64_t>(RoundUpToBlock(bytes), kBlockSize);
}

size_t ContentReader::PieceBytes(const FileState& st) {
  return static_cast<size_t>(std::min<uint64_t>(kPieceBytes, st.size - st.off));
}

std::unique_ptr<std::byte[]> ContentReader::TakeBuffer(size_t capacity, size_t* got_capacity) {
  *got_capacity = capacity;
  if (capacity == 0) return nullptr;
  if (capacity == kPieceBytes && !spare_.empty()) {
    std::unique_ptr<std::byte[]> b = std::move(spare_.back());
    spare_.pop_back();
    return b;
  }
  // Uninitialized: every byte is read into or zeroed before the writer sees it.
  return std::unique_ptr<std::byte[]>(new std::byte[capacity]);
}

void ContentReader::ReadSparsePiece(FileState& st, ContentPiece& p) const {
  p.offset = st.off;
  const size_t len = static_cast<size_t>(std::min(index::kContentChunkSize, st.size - st.off));
  size_t got = 0;
  while (got < len) {
    Result<size_t> n = tree_.Read(st.ino, st.off + got,
                                  std::span<std::byte>(p.data.get() + got, len - got));
    if (!n.ok() || *n == 0) {
      p.status = n.ok() ? DataLossError("content ends at byte " + std::to_string(st.off + got))
                        : n.status();
      p.needs_path = n.ok();
      p.last = true;
      return;
    }
    got += *n;
  }
  st.chunks.push_back(Sha256Of(std::string_view(reinterpret_cast<const char*>(p.data.get()), len)));
  std::memset(p.data.get() + len, 0, RoundUpToBlock(len) - len);
  p.bytes = len;
  st.off += len;
  st.SkipHoles();
}

void ContentReader::ReadPiece(FileState& st, ContentPiece& p) const {
  p.offset = st.off;
  if (st.sparse && st.started) {
    if (st.off < st.size) ReadSparsePiece(st, p);
    if (st.off < st.size || !p.status.ok()) return;
    p.last = true;
    const Digest read = index::SparseFileDigest(st.size, st.chunks);
    if (read != st.want) {
      p.status = DataLossError("content does not match its digest (expected " +
                               st.want.ToString() + ", read " + read.ToString() + ")");
      p.needs_path = true;
    }
    return;
  }
  if (!st.started) {
    st.started = true;
    Result<Digest> want = tree_.ContentDigest(st.ino);
    if (!want.ok()) {
      p.status = want.status();
      p.last = true;
      return;
    }
    st.want = *want;
    if (st.sparse) return ReadPiece(st, p);
  }
  const size_t want_bytes = PieceBytes(st);
  size_t got = 0;
  while (got < want_bytes) {
    Result<size_t> n =
        tree_.Read(st.ino, st.off + got, std::span<std::byte>(p.data.get() + got, want_bytes - got));
    if (!n.ok()) {
      p.status = n.status();
      p.last = true;
      return;
    }
    if (*n == 0) break;
    got += *n;
  }
  if (got < want_bytes) {
    p.status = DataLossError("content ends at byte " + std::to_string(st.off + got) +
                             ", its size is " + std::to_string(st.size));
    p.needs_path = true;
    p.last = true;
    return;
  }
  if (got > 0) {
    st.hash.Update(p.data.get(), got);
    std::memset(p.data.get() + got, 0, RoundUpToBlock(got) - got);
  }
  p.bytes = got;
  st.off += got;
  if (st.off < st.size) return;
  p.last = true;
  const Digest read = st.hash.Finish();
  if (read != st.want) {
    p.status = DataLossError("content does not match its digest (expected " +
                             st.want.ToString() + ", read " + read.ToString() + ")");
    p.needs_path = true;
  }
}

void ContentReader::ReaderLoop() {
  for (;;) {
    size_t i = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ || failed_ || next_claim_ >= files_.size()) return;
      i = next_claim_++;
    }
    FileState st(i, files_[i]);
    for (bool last = false; !last;) {
      ContentPiece p;
      const size_t capacity = static_cast<size_t>(RoundUpToBlock(PieceBytes(st)));
      p.cost = PieceCost(capacity);
      {
        std::unique_lock<std::mutex> lock(mu_);
        // The file the writer waits on may always take one piece once its queue is empty:
        // otherwise files after it could fill the window and nothing would ever drain it.
        readers_cv_.wait(lock, [&] {
          if (stop_) return true;
          if (buffered_ + p.cost <= window_) return true;
          if (i != head_) return false;
          auto it = ready_.find(i);
          return it == ready_.end() || it->second.empty();
        });
        if (stop_) return;
        buffered_ += p.cost;
        p.data = TakeBuffer(capacity, &p.capacity);
      }
      ReadPiece(st, p);
      last = p.last;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!p.status.ok()) failed_ = true;
        ready_[i].push_back(std::move(p));
      }
      writer_cv_.notify_one();
    }
  }
}

ContentPiece ContentReader::Next(size_t i) {
  if (threads_.empty()) {
    if (inline_ == nullptr || inline_->index != i) {
      inline_ = std::make_unique<FileState>(i, files_[i]);
    }
    ContentPiece p;
    {
      std::lock_guard<std::mutex> lock(mu_);
      p.data = TakeBuffer(static_cast<size_t>(RoundUpToBlock(PieceBytes(*inline_))), &p.capacity);
    }
    ReadPiece(*inline_, p);
    return p;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (head_ != i) {
    head_ = i;
    readers_cv_.notify_all();
  }
  writer_cv_.wait(lock, [&] {
    auto it = ready_.find(i);
    return it != ready_.end() && !it->second.empty();
  });
  auto it = ready_.find(i);
  ContentPiece p = std::move(it->second.front());
  it->second.pop_front();
  if (p.last) ready_.erase(it);
  return p;
}

void ContentReader::Release(ContentPiece&& piece) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    buffered_ -= piece.cost;
    if (piece.capacity == kPieceBytes && piece.data != nullptr && spare_.size() < kMaxSpare) {
      spare_.push_back(std::move(piece.data));
    }
  }
  if (!threads_.empty()) readers_cv_.notify_all();
}

}  // namespace lazyfs::convert
