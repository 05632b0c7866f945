// dm-verity hash trees, written and checked by hand.
//
// Why by hand: no library lazyfs can link writes a dm-verity tree (libcryptsetup's
// crypt_format(CRYPT_VERITY) does, but it wants a block device or a loop setup and offers no
// sparse-aware or streaming writer); the format is small and fixed, and `veritysetup verify`
// checks what we write in the tests. The format, as cryptsetup documents it (hash type 1):
// - every 4096-byte data block is hashed as sha256(salt || block); 128 digests fill a hash block,
//   the rest of the block is zero; each level hashes the level below the same way until one
//   block remains, whose salted hash is the root hash;
// - the hash area starts one hash block after the superblock and holds the levels top first;
// - the 512-byte superblock: "verity\0\0", version 1, hash_type 1, uuid, "sha256", block sizes,
//   the data block count, the salt. Integers little-endian.
// Holes in the image (SEEK_DATA/SEEK_HOLE) are hashed once: every all-zero block has the same
// digest, so a sparse 6 GiB image costs what its data costs.
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "base/digest.h"
#include "base/fd.h"
#include "base/text.h"
#include "convert/convert.h"

namespace lazyfs::convert {
namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kDigestLen = 32;
constexpr uint64_t kPerBlock = kBlock / kDigestLen;  // 128
constexpr size_t kSuperblockSize = 512;
constexpr uint64_t kReadBlocks = 256;  // 1 MiB per pread

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// sha256(salt || block): the salted prefix is hashed once and copied for every block.
class BlockHasher {
 public:
  explicit BlockHasher(const std::string& salt)
      : salted_(EVP_MD_CTX_new()), work_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(salted_.get(), EVP_sha256(), nullptr);
    EVP_DigestUpdate(salted_.get(), salt.data(), salt.size());
  }
  void Hash(const void* block, uint8_t* out) {
    EVP_MD_CTX_copy_ex(work_.get(), salted_.get());
    EVP_DigestUpdate(work_.get(), block, kBlock);
    unsigned int len = 0;
    EVP_DigestFinal_ex(work_.get(), out, &len);
  }

 private:
  MdCtx salted_, work_;
};

// Reads exactly len bytes at off; a file that ends first is DataLoss.
Status ReadExactly(int fd, void* buf, size_t len, uint64_t off, const std::string& path) {
  Result<size_t> n = PreadFull(fd, buf, len, off);
  if (!n.ok()) return n.status().WithContext("reading " + path);
  if (*n != len) return DataLossError(path + " ends at byte " + std::to_string(off + *n));
  return Status::Ok();
}

// Level-0 digests of the data blocks [0, data_blocks) of fd.
Result<std::vector<uint8_t>> HashData(int fd, const std::string& path, uint64_t data_blocks,
                                      BlockHasher& hasher) {
  std::vector<uint8_t> out(data_blocks * kDigestLen);
  std::vector<char> zero(kBlock, 0);
  uint8_t zero_digest[kDigestLen];
  hasher.Hash(zero.data(), zero_digest);
  std::vector<char> buf(kReadBlocks * kBlock);
  const uint64_t end = data_blocks * kBlock;
  uint64_t off = 0;
  while (off < end) {
    // Skip a hole: its blocks are all zero.
    off_t data = ::lseek(fd, static_cast<off_t>(off), SEEK_DATA);
    uint64_t data_at = data < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(data), end);
    data_at = data_at / kBlock * kBlock;
    for (; off < data_at; off += kBlock) {
      std::memcpy(&out[off / kBlock * kDigestLen], zero_digest, kDigestLen);
    }
    if (off >= end) break;
    off_t hole = ::lseek(fd, static_cast<off_t>(off), SEEK_HOLE);
    uint64_t hole_at = hole < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(hole), end);
    hole_at = std::max((hole_at + kBlock - 1) / kBlock * kBlock, off + kBlock);
    hole_at = std::min(hole_at, end);
    while (off < hole_at) {
      const uint64_t n = std::min<uint64_t>(buf.size(), hole_at - off);
      LAZYFS_RETURN_IF_ERROR(ReadExactly(fd, buf.data(), n, off, path));
      for (uint64_t i = 0; i < n; i += kBlock) {
        hasher.Hash(buf.data() + i, &out[(off + i) / kBlock * kDigestLen]);
      }
      off += n;
    }
  }
  return out;
}

// Levels above level 0, as cryptsetup counts them: enough that the top level is one block.
int LevelCount(uint64_t data_blocks) {
  int levels = 0;
  while (levels < 9 && ((data_blocks - 1) >> (7 * levels)) != 0) ++levels;
  return levels;
}

struct HashTree {
  std::vector<std::vector<uint8_t>> levels;  // [0] hashes the data; each padded to whole blocks
  std::string root;                          // raw root digest
};

// Builds the levels from the level-0 digests.
HashTree BuildTree(std::vector<uint8_t> level0, uint64_t data_blocks, BlockHasher& hasher) {
  HashTree t;
  const int levels = LevelCount(data_blocks);
  uint8_t root[kDigestLen];
  if (levels == 0) {
    // One data block: the root is its own digest.
    t.root.assign(reinterpret_cast<const char*>(level0.data()), kDigestLen);
    return t;
  }
  std::vector<uint8_t> cur = std::move(level0);
  for (int i = 0; i < levels; ++i) {
    const uint64_t blocks = (cur.size() / kDigestLen + kPerBlock - 1) / kPerBlock;
    cur.resize(blocks * kBlock, 0);
    std::vector<uint8_t> next(blocks * kDigestLen);
    for (uint64_t b = 0; b < blocks; ++b) hasher.Hash(&cur[b * kBlock], &next[b * kDigestLen]);
    t.levels.push_back(std::move(cur));
    cur = std::move(next);
  }
  std::memcpy(root, cur.data(), kDigestLen);
  t.root.assign(reinterpret_cast<const char*>(root), kDigestLen);
  return t;
}

void PutLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

Status PwriteFull(int fd, const void* buf, size_t len, uint64_t off, const std::string& path) {
  const auto* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "writing " + path);
    p += n;
    off += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

std::string VeritySalt(std::string_view seed) {
  const Digest d = Sha256Of("lazyfs verity salt\n" + std::string(seed));
  return std::string(reinterpret_cast<const char*>(d.bytes().data()), d.bytes().size());
}

Result<VerityReport> WriteVerity(const std::string& data_path, uint64_t data_bytes,
                                 const std::string& hash_path, uint64_t hash_offset,
                                 const std::string& salt, const ProgressFn& progress) {
  if (data_bytes == 0 || data_bytes % kBlock != 0) {
    return InvalidArgumentError(
        "dm-verity needs a data size that is a positive multiple of 4096, "
        "not " +
        std::to_string(data_bytes));
  }
  if (hash_offset % kBlock != 0) {
    return InvalidArgumentError("dm-verity hash offset " + std::to_string(hash_offset) +
                                " is not a multiple of 4096");
  }
  if (salt.size() > 256) return InvalidArgumentError("dm-verity salt is longer than 256 bytes");
  LAZYFS_ASSIGN_OR_RETURN(Fd data, OpenFile(data_path, O_RDONLY));
  const uint64_t data_blocks = data_bytes / kBlock;
  BlockHasher hasher(salt);
  if (progress) progress(Progress{"verity", data_path, 0, data_bytes});
  LAZYFS_ASSIGN_OR_RETURN(std::vector<uint8_t> level0,
                          HashData(data.get(), data_path, data_blocks, hasher));
  if (progress) progress(Progress{"verity", data_path, data_bytes, data_bytes});
  HashTree tree = BuildTree(std::move(level0), data_blocks, hasher);

  uint8_t sb[kBlock] = {};
  std::memcpy(sb, "verity\0\0", 8);
  PutLe32(sb + 8, 1);   // superblock version
  PutLe32(sb + 12, 1);  // hash type 1: salt first, digests padded to a power of two
  // The hash device's UUID: derived from the root hash, so the same image gives the same file.
  const Digest uuid = Sha256Of("lazyfs verity uuid\n" + tree.root);
  std::memcpy(sb + 16, uuid.bytes().data(), 16);
  sb[16 + 6] = static_cast<uint8_t>((sb[16 + 6] & 0x0f) | 0x80);
  sb[16 + 8] = static_cast<uint8_t>((sb[16 + 8] & 0x3f) | 0x80);
  std::memcpy(sb + 32, "sha256", 6);
  PutLe32(sb + 64, kBlock);
  PutLe32(sb + 68, kBlock);
  PutLe64(sb + 72, data_blocks);
  sb[80] = static_cast<uint8_t>(salt.size());
  sb[81] = static_cast<uint8_t>(salt.size() >> 8);
  std::memcpy(sb + 88, salt.data(), salt.size());

  // O_CREAT without O_TRUNC: with --verity=append the hash goes after the image's data.
  LAZYFS_ASSIGN_OR_RETURN(Fd out, OpenFile(hash_path, O_WRONLY | O_CREAT, 0600));
  LAZYFS_RETURN_IF_ERROR(PwriteFull(out.get(), sb, kBlock, hash_offset, hash_path));
  uint64_t at = hash_offset + kBlock;
  for (auto it = tree.levels.rbegin(); it != tree.levels.rend(); ++it) {
    LAZYFS_RETURN_IF_ERROR(PwriteFull(out.get(), it->data(), it->size(), at, hash_path));
    at += it->size();
  }
  if (::ftruncate(out.get(), static_cast<off_t>(at)) != 0) {
    return ErrnoError(errno, "sizing " + hash_path);
  }
  if (::fsync(out.get()) != 0) return ErrnoError(errno, "fsync " + hash_path);
  LAZYFS_RETURN_IF_ERROR(out.Close());

  VerityReport r;
  r.root_hash = HexEncode(tree.root);
  r.salt = HexEncode(salt);
  r.data_bytes = data_bytes;
  r.data_blocks = data_blocks;
  r.hash_offset = hash_offset;
  r.hash_bytes = at - hash_offset;
  return r;
}

Result<VerityCheck> CheckVerity(const std::string& data_path, const std::string& hash_path,
                                uint64_t hash_offset, const ProgressFn& progress) {
  LAZYFS_ASSIGN_OR_RETURN(Fd hash, OpenFile(hash_path, O_RDONLY));
  uint8_t sb[kSuperblockSize];
  LAZYFS_RETURN_IF_ERROR(ReadExactly(hash.get(), sb, sizeof(sb), hash_offset, hash_path));
  auto le32 = [&](size_t at) {
    return uint32_t{sb[at]} | uint32_t{sb[at + 1]} << 8 | uint32_t{sb[at + 2]} << 16 |
           uint32_t{sb[at + 3]} << 24;
  };
  if (std::memcmp(sb, "verity\0\0", 8) != 0 || le32(8) != 1 || le32(12) != 1 ||
      std::memcmp(sb + 32, "sha256\0", 7) != 0 || le32(64) != kBlock || le32(68) != kBlock) {
    return DataLossError(hash_path +
                         ": no lazyfs dm-verity superblock (version 1, sha256, "
                         "4096-byte blocks) at offset " +
                         std::to_string(hash_offset));
  }
  const uint64_t data_blocks = uint64_t{le32(72)} | uint64_t{le32(76)} << 32;
  const size_t salt_len = sb[80] | size_t{sb[81]} << 8;
  if (salt_len > 256 || data_blocks == 0) {
    return DataLossError(hash_path + ": corrupt dm-verity superblock");
  }
  const std::string salt(reinterpret_cast<const char*>(sb + 88), salt_len);
  LAZYFS_ASSIGN_OR_RETURN(Fd data, OpenFile(data_path, O_RDONLY));
  BlockHasher hasher(salt);
  if (progress) progress(Progress{"verify", data_path, 0, data_blocks * kBlock});
  LAZYFS_ASSIGN_OR_RETURN(std::vector<uint8_t> level0,
                          HashData(data.get(), data_path, data_blocks, hasher));
  if (progress) progress(Progress{"verify", data_path, data_blocks * kBlock, data_blocks * kBlock});

  VerityCheck c;
  c.data_blocks = data_blocks;
  c.salt = HexEncode(salt);
  // Compare level 0 with the stored one (the bottom level is the last in the hash area) to name
  // the data blocks that changed.
  const int levels = LevelCount(data_blocks);
  if (levels > 0) {
    uint64_t at = hash_offset + kBlock;
    uint64_t n = data_blocks;
    std::vector<uint64_t> sizes;
    for (int i = 0; i < levels; ++i) {
      n = (n + kPerBlock - 1) / kPerBlock;
      sizes.push_back(n * kBlock);
    }
    for (int i = levels - 1; i > 0; --i) at += sizes[static_cast<size_t>(i)];
    std::vector<uint8_t> stored(data_blocks * kDigestLen);
    LAZYFS_RETURN_IF_ERROR(ReadExactly(hash.get(), stored.data(), stored.size(), at, hash_path));
    for (uint64_t b = 0; b < data_blocks; ++b) {
      if (std::memcmp(&stored[b * kDigestLen], &level0[b * kDigestLen], kDigestLen) == 0) continue;
      if (!c.bad_ranges.empty() && c.bad_ranges.back().second == b) {
        ++c.bad_ranges.back().second;
      } else {
        c.bad_ranges.emplace_back(b, b + 1);
      }
    }
  }
  HashTree tree = BuildTree(std::move(level0), data_blocks, hasher);
  c.root_hash = HexEncode(tree.root);
  return c;
}

}  // namespace lazyfs::convert
