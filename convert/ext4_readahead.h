// Private to convert/: reads regular files' content ahead of the ext4 writer, on a pool of
// threads, so fetching (range requests, decompression) and hashing overlap with writing.
//
// The one idea: the writer's order of regular files is known before it starts (the survey walks
// the tree in the same order), so readers can take files in that order and hand the writer
// 4 MiB pieces, already hashed and checked against Tree::ContentDigest. The writer stays the only
// thread that allocates blocks and writes, in the same order as with no readers, so the image
// bytes do not depend on the thread count. Memory is bounded by a window of buffered pieces; the
// file the writer waits for may always take one piece past it, so a full window never blocks
// the writer (a file larger than the window streams through it).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::convert {

// A regular file to read: its tree inode and the size the survey saw. A sparse file (see
// index/sparse.h) is read only where `data` says, chunk by chunk, and checked against its
// chunk-list digest; its holes are neither read nor handed to the writer.
struct FileToRead {
  uint64_t ino = 0;
  uint64_t size = 0;
  bool sparse = false;
  index::Extents data;  // sparse files: where the bytes may be other than zero
};

// A piece of one file's content, in file order.
struct ContentPiece {
  std::unique_ptr<std::byte[]> data;  // DivCeil(bytes, 4096) whole blocks, zero past `bytes`
  uint64_t offset = 0;                // where the piece starts in the file
  size_t bytes = 0;                   // content bytes in data; 0 for an empty file or an error
  bool last = false;                  // no piece follows (end of file, or an error)
  // Checked after the piece's data is written: a Tree error (as the tree gave it), or DataLoss
  // for content that ends early or does not match its digest; `needs_path` says the message
  // still lacks the "PATH: " the writer prefixes.
  Status status;
  bool needs_path = false;
  uint64_t cost = 0;  // bytes charged to the window until Release
  size_t capacity = 0;
};

// Thread-safe for one writer thread calling Next and Release while its own reader threads run.
// The destructor stops and joins every reader (one blocked on a full window wakes at once; one
// inside Tree::Read finishes that read first).
class ContentReader {
 public:
  // Pieces are this big (the last of a file smaller), as the writer's chunks always were.
  static constexpr size_t kPieceBytes = size_t{4} << 20;

  // `files` in the order the writer will ask for them. threads <= 1: no threads, Next reads in
  // the caller's thread. window_bytes: content buffered ahead of the writer, at most.
  ContentReader(const index::Tree& tree, std::vector<FileToRead> files, unsigned threads,
                uint64_t window_bytes);
  ~ContentReader();
  ContentReader(const ContentReader&) = delete;
  ContentReader& operator=(const ContentReader&) = delete;

  size_t file_count() const { return files_.size(); }
  const FileToRead& file(size_t i) const { return files_[i]; }

  // The next piece of file number i (0-based in `files`). Files must be asked for in order and
  // each until a piece with `last`.
  ContentPiece Next(size_t i);
  // Gives a piece's memory back to the window.
  void Release(ContentPiece&& piece);

 private:
  struct FileState;
  void ReaderLoop();
  // Reads the next piece of st's file into p (its buffer already reserved or absent).
  void ReadPiece(FileState& st, ContentPiece& p) const;
  // A sparse file's next data chunk into p (holes before it only counted).
  void ReadSparsePiece(FileState& st, ContentPiece& p) const;
  static uint64_t PieceCost(uint64_t bytes);
  // How many bytes the next piece of st holds.
  static size_t PieceBytes(const FileState& st);
  std::unique_ptr<std::byte[]> TakeBuffer(size_t capacity, size_t* got_capacity);

  const index::Tree& tree_;
  const std::vector<FileToRead> files_;
  const uint64_t window_;
  std::vector<std::thread> threads_;
  std::unique_ptr<FileState> inline_;  // the file being read in Next when there are no threads

  // Lock order: mu_ only; Tree calls are made without it.
  std::mutex mu_;
  std::condition_variable readers_cv_;  // window space, a new head file, or stop
  std::condition_variable writer_cv_;   // a piece is ready
  size_t next_claim_ = 0;               // GUARDED_BY(mu_): the next file a reader takes
  size_t head_ = 0;                     // GUARDED_BY(mu_): the file the writer is on
  uint64_t buffered_ = 0;               // GUARDED_BY(mu_): cost of pieces not yet released
  bool stop_ = false;                   // GUARDED_BY(mu_)
  bool failed_ = false;                 // GUARDED_BY(mu_): a file failed; take no new ones
  std::map<size_t, std::deque<ContentPiece>> ready_;  // GUARDED_BY(mu_): by file number
  std::vector<std::unique_ptr<std::byte[]>> spare_;   // GUARDED_BY(mu_): kPieceBytes buffers
};

}  // namespace lazyfs::convert
