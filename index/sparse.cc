#include "index/sparse.h"

#include <cstring>
#include <map>
#include <string>

#include "base/thread_annotations.h"
#include "index/layer_entry.h"
#include "index/tree.h"

namespace lazyfs::index {

Digest ZeroChunkDigest(uint64_t len) {
  // One entry per length seen: the full chunk, and the tail length of each sparse file read.
  static Mutex mu;
  static std::map<uint64_t, Digest>* known = new std::map<uint64_t, Digest>();
  {
    MutexLock lock(mu);
    auto it = known->find(len);
    if (it != known->end()) return it->second;
  }
  const Digest d = Sha256Of(std::string(static_cast<size_t>(len), '\0'));
  MutexLock lock(mu);
  if (known->size() < 4096) known->emplace(len, d);
  return d;
}

bool IsZeroChunk(const Digest& chunk, uint64_t len) {
  return len > 0 && len <= kContentChunkSize && chunk == ZeroChunkDigest(len);
}

Digest SparseFileDigest(uint64_t size, const std::vector<Digest>& chunks) {
  Sha256 h;
  h.Update("lazyfs sparse file v1\n");
  unsigned char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(size >> (8 * i));
  h.Update(le, sizeof(le));
  for (const Digest& c : chunks) h.Update(c.bytes().data(), c.bytes().size());
  return h.Finish();
}

Extents DataOfChunks(uint64_t size, const std::vector<Digest>& chunks) {
  Extents out;
  for (uint64_t i = 0; i < chunks.size(); ++i) {
    const uint64_t start = i * kContentChunkSize;
    const uint64_t end = std::min(size, start + kContentChunkSize);
    if (start >= end || IsZeroChunk(chunks[i], end - start)) continue;
    if (!out.empty() && out.back().second == start) {
      out.back().second = end;
    } else {
      out.emplace_back(start, end);
    }
  }
  return out;
}

Result<Extents> CheckSparseMap(Extents map, uint64_t size) {
  Extents out;
  uint64_t end = 0;
  for (const auto& [offset, length] : map) {
    if (length == 0) continue;
    if (offset < end || offset > size || length > size - offset) {
      return InvalidArgumentError("sparse map entry at " + std::to_string(offset) + " of " +
                                  std::to_string(length) +
                                  " bytes overlaps another or lies past the size " +
                                  std::to_string(size));
    }
    end = offset + length;
    out.emplace_back(offset, end);
  }
  return out;
}

SparseChunker::SparseChunker(uint64_t size, ChunkFn chunk) : size_(size), chunk_(std::move(chunk)) {}

uint64_t SparseChunker::ChunkLen(uint64_t index) const {
  return std::min(kContentChunkSize, size_ - index * kContentChunkSize);
}

Status SparseChunker::CloseUpTo(uint64_t index) {
  while (digests_.size() < index) {
    const uint64_t i = digests_.size();
    if (open_.empty()) {
      digests_.push_back(ZeroChunkDigest(ChunkLen(i)));
      continue;
    }
    open_.resize(static_cast<size_t>(ChunkLen(i)), '\0');
    const Digest d = Sha256Of(open_);
    digests_.push_back(d);
    if (chunk_) LAZYFS_RETURN_IF_ERROR(chunk_(i, d, open_));
    open_.clear();
  }
  return Status::Ok();
}

Status SparseChunker::Data(uint64_t offset, std::string_view bytes) {
  if (offset < pos_ || offset > size_ || bytes.size() > size_ - offset) {
    return InvalidArgumentError("sparse data at " + std::to_string(offset) +
                                " goes backwards or past the size " + std::to_string(size_));
  }
  while (!bytes.empty()) {
    const uint64_t index = offset / kContentChunkSize;
    LAZYFS_RETURN_IF_ERROR(CloseUpTo(index));
    const uint64_t in_chunk = offset - index * kContentChunkSize;
    if (open_.size() < in_chunk) open_.resize(static_cast<size_t>(in_chunk), '\0');
    const size_t take = static_cast<size_t>(std::min<uint64_t>(bytes.size(), kContentChunkSize - in_chunk));
    open_.append(bytes.data(), take);
    bytes.remove_prefix(take);
    offset += take;
    if (open_.size() == kContentChunkSize) LAZYFS_RETURN_IF_ERROR(CloseUpTo(index + 1));
  }
  pos_ = offset;
  return Status::Ok();
}

Result<Digest> SparseChunker::Finish(std::vector<Digest>* chunks) {
  LAZYFS_RETURN_IF_ERROR(CloseUpTo((size_ + kContentChunkSize - 1) / kContentChunkSize));
  const Digest d = SparseFileDigest(size_, digests_);
  if (chunks) *chunks = std::move(digests_);
  return d;
}

Result<Digest> DigestOfFile(const Tree& tree, uint64_t ino, uint64_t size, bool sparse) {
  LAZYFS_ASSIGN_OR_RETURN(Tree::ContentLayout layout, tree.Layout(ino));
  std::string buf;
  Sha256 whole;
  std::vector<Digest> chunks;
  size_t extent = 0;
  for (uint64_t start = 0; start < size; start += kContentChunkSize) {
    const uint64_t len = std::min(kContentChunkSize, size - start);
    while (extent < layout.data.size() && layout.data[extent].second <= start) ++extent;
    const bool hole = extent == layout.data.size() || layout.data[extent].first >= start + len;
    if (hole && sparse) {
      chunks.push_back(ZeroChunkDigest(len));
      continue;
    }
    buf.assign(static_cast<size_t>(len), '\0');
    if (!hole) {
      for (size_t got = 0; got < len;) {
        LAZYFS_ASSIGN_OR_RETURN(
            size_t n, tree.Read(ino, start + got, std::as_writable_bytes(std::span(buf)).subspan(got)));
        if (n == 0) return DataLossError("content ends at byte " + std::to_string(start + got));
        got += n;
      }
    }
    if (sparse) {
      chunks.push_back(Sha256Of(buf));
    } else {
      whole.Update(buf);
    }
  }
  return sparse ? SparseFileDigest(size, chunks) : whole.Finish();
}

}  // namespace lazyfs::index
