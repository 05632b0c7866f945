// The filesystem around the tree: the image file (a temporary sibling renamed into place), the
// superblock and its identity, the group tables, the journal, and WriteExt4's sequence over the
// survey (ext4_sizing.cc) and the inode writer (ext4_writer.cc).
//
// Every time comes from the tree or Ext4Options::fs_time (also fs->now, for the journal and the
// superblock), and the UUID and hash seed from the seed: the same inputs give the same bytes.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "convert/ext4_time.h"
#include "convert/ext4_writer.h"

namespace lazyfs::convert {
namespace {

// The temporary image beside out_path (OUT.tmp-PID-XXXXXXXX); removed on destruction unless
// committed. Its writer holds an flock on it for its whole life, so a later run can tell the
// temporaries of a writer that is gone (killed, say) from those of one still at work.
class TempImage {
 public:
  ~TempImage() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  Status Create(const std::string& out_path, uint64_t bytes, mode_t mode) {
    RemoveStale(out_path);
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
      char suffix[40];
      std::snprintf(suffix, sizeof(suffix), ".tmp-%d-%08x", static_cast<int>(::getpid()),
                    static_cast<unsigned>(rd()));
      std::string path = out_path + suffix;
      // Owner-only from the start: the content is the image's, root-only files included.
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) {
        if (errno == EEXIST) continue;
        return ErrnoError(errno, "creating " + path);
      }
      fd_.Reset(fd);
      path_ = std::move(path);
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) return ErrnoError(errno, "locking " + path_);
      if (::fchmod(fd, mode) != 0) return ErrnoError(errno, "chmod " + path_);
      if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
        return ErrnoError(errno, "sizing " + path_ + " to " + std::to_string(bytes) + " bytes");
      }
      return Status::Ok();
    }
    return InternalError("could not find a free temporary name beside " + out_path);
  }
  const std::string& path() const { return path_; }
  // fsync, rename over out_path, fsync the directory.
  Status Commit(const std::string& out_path) {
    if (::fsync(fd_.get()) != 0) return ErrnoError(errno, "fsync " + path_);
    LAZYFS_RETURN_IF_ERROR(fd_.Close());
    if (::rename(path_.c_str(), out_path.c_str()) != 0) {
      return ErrnoError(errno, "renaming " + path_ + " to " + out_path);
    }
    path_.clear();
    const size_t slash = out_path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : out_path.substr(0, slash + 1);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);  // best effort: the image is complete either way
      ::close(dfd);
    }
    return Status::Ok();
  }

 private:
  // Removes OUT.tmp-PID-* siblings whose writer is gone: its process no longer exists and
  // nobody holds the file's lock (a writer between creating and locking its file has a live
  // PID; a PID reused by another program only leaves the file for later). Best effort.
  static void RemoveStale(const std::string& out_path) {
    const size_t slash = out_path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : out_path.substr(0, slash);
    const std::string prefix =
        (slash == std::string::npos ? out_path : out_path.substr(slash + 1)) + ".tmp-";
    DIR* d = ::opendir(dir.empty() ? "/" : dir.c_str());
    if (!d) return;
    std::vector<std::string> stale;
    while (dirent* de = ::readdir(d)) {
      const std::string name = de->d_name;
      if (!name.starts_with(prefix)) continue;
      const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
      if (pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
      const std::string path = dir + "/" + name;
      Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (fd.valid() && ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) stale.push_back(path);
    }
    ::closedir(d);
    for (const std::string& path : stale) ::unlink(path.c_str());
  }

  std::string path_;
  Fd fd_;
};

void SetSuperTime(uint32_t& lo, uint8_t& hi, int64_t t) {
  const Ext4SuperTime st = EncodeSuperTime(t);
  lo = st.lo;
  hi = st.hi;
}

// The superblock parameters libext2fs lays the filesystem out from.
ext2_super_block Parameters(uint64_t blocks, const Survey& survey, const Ext4Options& options) {
  ext2_super_block param;
  std::memset(&param, 0, sizeof(param));
  ext2fs_blocks_count_set(&param, blocks);
  param.s_log_block_size = 2;  // 1024 << 2
  param.s_rev_level = EXT2_DYNAMIC_REV;
  param.s_inode_size = kInodeSize;
  param.s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
  param.s_log_groups_per_flex = 4;
  const double free_fraction = std::max(options.free_fraction, 0.0);
  param.s_inodes_count = static_cast<uint32_t>(std::min<uint64_t>(
      InodesFor(blocks, survey.needs, free_fraction, options.read_only), UINT32_MAX - 1));
  param.s_feature_compat = EXT2_FEATURE_COMPAT_EXT_ATTR | EXT2_FEATURE_COMPAT_DIR_INDEX;
  param.s_feature_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_EXTENTS |
                             EXT4_FEATURE_INCOMPAT_FLEX_BG | EXT4_FEATURE_INCOMPAT_64BIT;
  param.s_feature_ro_compat =
      EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE |
      EXT4_FEATURE_RO_COMPAT_HUGE_FILE | EXT4_FEATURE_RO_COMPAT_DIR_NLINK |
      EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE | EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;
  return param;
}

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".
std::string UuidText(const uint8_t* u) {
  char text[37];
  std::snprintf(text, sizeof(text),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
                u[15]);
  return text;
}

// Identity and times: the same tree (or seed) and options give the same bytes. Returns the UUID.
std::string SetIdentity(ext2_filsys fs, const Survey& survey, const Ext4Options& options,
                        int64_t fs_time) {
  const std::string seed_text =
      options.seed.empty() ? survey.fingerprint.ToString() : "seed:" + options.seed;
  const Digest uuid_digest = Sha256Of("lazyfs ext4 uuid\n" + seed_text);
  const Digest hash_digest = Sha256Of("lazyfs ext4 hash seed\n" + seed_text);
  uint8_t uuid[16];
  std::memcpy(uuid, uuid_digest.bytes().data(), 16);
  uuid[6] = static_cast<uint8_t>((uuid[6] & 0x0f) | 0x80);  // version 8: custom (RFC 9562)
  uuid[8] = static_cast<uint8_t>((uuid[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::memcpy(fs->super->s_uuid, uuid, 16);
  std::memcpy(fs->super->s_hash_seed, hash_digest.bytes().data(), 16);
  fs->super->s_def_hash_version = EXT2_HASH_HALF_MD4;
  // One fixed hash signedness, so the image does not depend on the host's char.
  fs->super->s_flags = (fs->super->s_flags & ~EXT2_FLAGS_SIGNED_HASH) | EXT2_FLAGS_UNSIGNED_HASH;
  fs->super->s_checksum_type = EXT2_CRC32C_CHKSUM;
  fs->super->s_max_mnt_count = -1;
  fs->super->s_default_mount_opts = EXT2_DEFM_XATTR_USER | EXT2_DEFM_ACL;
  std::memset(fs->super->s_volume_name, 0, sizeof(fs->super->s_volume_name));
  std::memcpy(fs->super->s_volume_name, options.label.data(), options.label.size());
  fs->now = static_cast<time_t>(std::clamp<int64_t>(fs_time, 0, index::kMaxTimeSec));
  SetSuperTime(fs->super->s_mkfs_time, fs->super->s_mkfs_time_hi, fs_time);
  SetSuperTime(fs->super->s_lastcheck, fs->super->s_lastcheck_hi, fs_time);
  ext2fs_init_csum_seed(fs);
  return UuidText(uuid);
}

// An empty filesystem of `blocks` blocks in the file at `path`, its group tables allocated.
Result<Ext2Fs> CreateFilesystem(const std::string& path, uint64_t blocks, const Survey& survey,
                                const Ext4Options& options) {
  ext2_super_block param = Parameters(blocks, survey, options);
  ext2_filsys raw = nullptr;
  errcode_t err = ext2fs_initialize(path.c_str(), EXT2_FLAG_RW | EXT2_FLAG_64BITS, &param,
                                    unix_io_manager, &raw);
  if (err != 0) return Ext2Error(err, "while creating the filesystem in " + path);
  Ext2Fs fs(raw);
  if (fs->super->s_inodes_count < survey.needs.inodes) {
    return ResourceExhaustedError("tree needs " + std::to_string(survey.needs.inodes) +
                                  " inodes, an image of " + std::to_string(blocks * kBlockSize) +
                                  " bytes holds " + std::to_string(fs->super->s_inodes_count));
  }
  return fs;
}

}  // namespace

Result<Ext4Report> WriteExt4(const index::Tree& tree, const std::string& out_path,
                             const Ext4Options& options, const ProgressFn& progress) {
  if (options.label.size() > EXT2_LABEL_LEN) {
    return InvalidArgumentError("label \"" + options.label + "\" is longer than 16 bytes");
  }
  LAZYFS_ASSIGN_OR_RETURN(Survey survey, SurveyTree(tree));
  LAZYFS_ASSIGN_OR_RETURN(const uint64_t blocks, ImageBlocks(survey, options));
  const int64_t fs_time = options.fs_time.value_or(survey.newest_mtime);

  TempImage temp;
  LAZYFS_RETURN_IF_ERROR(temp.Create(out_path, blocks * kBlockSize, options.file_mode));
  // Readers start now, so fetching overlaps with laying out the filesystem; they are stopped
  // and joined when `content` goes out of scope, on every return path.
  unsigned threads = options.read_threads;
  if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 4u, 8u);
  ContentReader content(tree, std::move(survey.files), threads, options.read_window_bytes);
  const std::string ctx = "while writing " + temp.path();

  LAZYFS_ASSIGN_OR_RETURN(Ext2Fs fs, CreateFilesystem(temp.path(), blocks, survey, options));
  Ext4Report report;
  report.uuid = SetIdentity(fs.get(), survey, options, fs_time);
  LAZYFS_EXT2_CHECK(ext2fs_allocate_tables(fs.get()), ctx + ": allocating group tables");
  // The file was created empty, so inode tables already read as zeros.
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    ext2fs_bg_flags_set(fs.get(), g, EXT2_BG_INODE_ZEROED);
    ext2fs_group_desc_csum_set(fs.get(), g);
  }
  ext2fs_mark_super_dirty(fs.get());

  auto journal = [&]() -> Status {
    if (options.read_only) return Status::Ok();
    ext2fs_journal_params jp;
    LAZYFS_EXT2_CHECK(ext2fs_get_journal_params(&jp, fs.get()), ctx + ": sizing the journal");
    LAZYFS_EXT2_CHECK(
        ext2fs_add_journal_inode3(fs.get(), &jp, ~0ULL,
                                  EXT2_MKJOURNAL_LAZYINIT | EXT2_MKJOURNAL_NO_MNT_CHECK),
        ctx + ": adding the journal");
    return Status::Ok();
  };
  LAZYFS_ASSIGN_OR_RETURN(const uint64_t written, WriteInodes(tree, fs.get(), survey, content,
                                                              options, progress, ctx, journal));

  report.image_bytes = blocks * kBlockSize;
  report.inodes = survey.inodes;
  report.data_bytes = written;
  report.free_bytes = ext2fs_free_blocks_count(fs->super) * kBlockSize;
  LAZYFS_RETURN_IF_ERROR(fs.Close().WithContext(ctx));
  LAZYFS_RETURN_IF_ERROR(temp.Commit(out_path));
  return report;
}

}  // namespace lazyfs::convert
