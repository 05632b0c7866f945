// The FUSE front end: the only file that includes <fuse_lowlevel.h>.
//
// Each callback is one FileSystem call and one reply, through Reply(), which maps a failed
// Status to errno (ErrnoFromStatus), logs it once, and is the exception barrier (bad_alloc →
// ENOMEM, anything else → EIO). Write operations answer EROFS without touching the tree.
//
// Lock order: Session::mu_ only; FileSystem locks internally and never calls back out.

// The 3.12 API adds fuse_loop_cfg_set_max_threads, which is what honours
// MountOptions::max_threads; everything else used here is the 3.5 API.
#ifdef LAZYFS_FUSE_LOOP_CFG
#define FUSE_USE_VERSION 312
#else
#define FUSE_USE_VERSION 35
#endif
#include <fuse_lowlevel.h>

#include <cxxabi.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#include "base/fd.h"
#include "base/log.h"
#include "base/stats.h"
#include "fs/cached_tree.h"
#include "fs/filesystem.h"
#include "fs/fs.h"
#include "fs/mount_options.h"
#include "fs/request_stats.h"
#include "fs/mount_table.h"
#include "fs/stats_channel.h"

namespace lazyfs::fs {
namespace {

constexpr const char* kTag = "fs";

FileSystem& Fs(fuse_req_t req) { return *static_cast<FileSystem*>(fuse_req_userdata(req)); }

int ReplyStatus(fuse_req_t req, const char* op, uint64_t ino, const Status& status) {
  const int err = ErrnoFromStatus(status);
  if (err == EIO) CountEio(status);
  if (IsExpectedErrno(err)) {
    (void)op;
    LAZYFS_DLOG(kTag, "%s(%llu): %s", op, static_cast<unsigned long long>(ino),
                status.ToString().c_str());
  } else {
    LAZYFS_LOG(kWarn, kTag, "%s(%llu): %s (%s)", op, static_cast<unsigned long long>(ino),
               status.ToString().c_str(), std::strerror(err));
  }
  return fuse_reply_err(req, err);
}

// The one shape of every callback: `work` returns a Status or Result<T>; on success `on_ok`
// replies (with the value for a Result); on failure the errno is replied and logged here. No
// exception leaves a callback (libfuse is C). libfuse disables thread cancellation while a
// request is processed, so a worker is never cancelled in here; should a forced unwind arrive
// anyway it must keep unwinding (swallowing it aborts the process).
template <typename Work, typename OnOk>
void Reply(fuse_req_t req, const char* op, uint64_t ino, Work&& work, OnOk&& on_ok) {
  int err = EIO;
  try {
    auto result = work();
    if constexpr (std::is_same_v<decltype(result), Status>) {
      if (result.ok()) {
        on_ok();
        return;
      }
      ReplyStatus(req, op, ino, result);
    } else {
      if (result.ok()) {
        on_ok(*result);
        return;
      }
      ReplyStatus(req, op, ino, result.status());
    }
    return;
  } catch (const abi::__forced_unwind&) {
    throw;
  } catch (const std::bad_alloc&) {
    err = ENOMEM;
    LAZYFS_LOG(kWarn, kTag, "%s(%llu): out of memory", op, static_cast<unsigned long long>(ino));
  } catch (const std::exception& e) {
    LAZYFS_LOG(kError, kTag, "%s(%llu): unexpected exception: %s", op,
               static_cast<unsigned long long>(ino), e.what());
  } catch (...) {
    LAZYFS_LOG(kError, kTag, "%s(%llu): unexpected exception", op,
               static_cast<unsigned long long>(ino));
  }
  if (err == EIO) Requests().eio_other.Add();
  fuse_reply_err(req, err);
}

void ReplyReadOnly(fuse_req_t req, [[maybe_unused]] const char* op) {
  LAZYFS_DLOG(kTag, "%s: read-only filesystem", op);
  fuse_reply_err(req, EROFS);
}

fuse_entry_param ToParam(const Entry& e) {
  fuse_entry_param p;
  std::memset(&p, 0, sizeof(p));
  p.ino = e.ino;
  p.generation = 0;  // inode numbers are never reused within a mount
  p.attr = e.attr;
  p.attr_timeout = e.attr_timeout;
  p.entry_timeout = e.entry_timeout;
  return p;
}

// An open directory: the listing snapshot readdir pages through, so a large directory is read
// from the tree once per opendir rather than once per page.
using DirHandle = std::shared_ptr<const DirListing>;

Result<DirHandle> HandleOf(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (fi != nullptr && fi->fh != 0) return *reinterpret_cast<DirHandle*>(fi->fh);
  return Fs(req).OpenDir(ino);
}

bool IsDotOrDotDot(const DirItem& item) { return item.name == "." || item.name == ".."; }

// Packs entries from `offset` into at most `size` bytes of readdir(plus) reply. readdirplus
// gives the kernel attributes for each child (which counts as a lookup), but not for "." and
// "..": those go out with ino 0, which the kernel reads as "no entry attributes", so no lookup
// is counted for them.
Result<std::string> FillDir(fuse_req_t req, const DirListing& listing, off_t offset, size_t size,
                            bool plus) {
  std::string buf(size, '\0');
  size_t used = 0;
  for (const DirItem& item : listing.From(static_cast<uint64_t>(offset))) {
    const off_t next = static_cast<off_t>(item.offset + 1);
    size_t n = 0;
    if (!plus) {
      struct stat st = {};
      st.st_ino = item.ino;
      st.st_mode = item.mode;
      n = fuse_add_direntry(req, buf.data() + used, size - used, item.name.c_str(), &st, next);
    } else {
      fuse_entry_param p;
      std::memset(&p, 0, sizeof(p));
      if (IsDotOrDotDot(item)) {
        p.attr.st_ino = item.ino;
        p.attr.st_mode = item.mode;
      } else {
        Result<Entry> e = Fs(req).EntryOf(item.ino);
        // A partial page is still a correct page; the error shows on the next call.
        if (!e.ok()) {
          if (used > 0) break;
          return e.status().WithContext("while listing entry " + item.name);
        }
        p = ToParam(*e);
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, item.name.c_str(), &p,
                                 next);
    }
    if (n > size - used) break;
    used += n;
  }
  buf.resize(used);
  return buf;
}

// ---- callbacks ----

void OnInit(void* /*userdata*/, fuse_conn_info* conn) {
  // Reads may be served concurrently and out of order: the tree is thread-safe.
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  // Always readdirplus, never the "auto" mode that falls back to plain readdir after the first
  // page: one listing then brings every child's attributes (from the metadata cache), so a
  // find or ls -l over a directory costs no lookup or getattr round trip per entry.
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  // Symlink targets never change: let the kernel keep them in its page cache.
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  // Lookups and listings of one directory may run in parallel: nothing here is per directory.
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  // Readahead is asynchronous (background requests): allow enough of them in flight to keep
  // every worker busy on a sequential read.
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  // The kernel keeps the smaller of the mount's readahead window and this. RaiseReadahead widened
  // the window before this reply; ask for all of it (libfuse passes on the kernel's old value).
  conn->max_readahead = std::max<unsigned>(conn->max_readahead, kReadaheadCeiling);
  // Splice is not requested: replies come from a memory buffer (Tree::Read fills it), and for a
  // single memory buffer libfuse writes to /dev/fuse even when splice is on. Splicing pays only
  // from a file descriptor (the content cache file), which the Tree interface does not expose.
  // Requests of up to 1 MiB need no max_read option: libfuse's buffer (256 pages) sets the
  // kernel's max_pages; the readahead window that decides buffered read sizes is raised after
  // mounting (RaiseReadahead).
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Requests().lookup.Add();
  Reply(req, "lookup", parent, [&] { return Fs(req).Lookup(parent, name); },
        [&](const Entry& e) {
          const fuse_entry_param p = ToParam(e);
          fuse_reply_entry(req, &p);
        });
}

// Inodes are the tree's and live as long as the mount: nothing to forget.
void OnForget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }
void OnForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

void OnGetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Requests().getattr.Add();
  Reply(req, "getattr", ino, [&] { return Fs(req).GetAttr(ino); },
        [&](const AttrReply& a) { fuse_reply_attr(req, &a.attr, a.timeout); });
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Reply(req, "open", ino, [&] { return Fs(req).Open(ino, fi->flags); },
        [&] {
          fi->keep_cache = 1;  // contents never change: keep the page cache across opens
          fuse_reply_open(req, fi);
        });
}

void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  // One buffer per worker thread, grown to the largest read it has served.
  thread_local std::vector<std::byte> buf;
  if (size >= kLargeReadBytes) Requests().large_reads.Add();
  Reply(req, "read", ino,
        [&] {
          if (buf.size() < size) buf.resize(size);
          return Fs(req).ReadInto(ino, static_cast<uint64_t>(off), std::span(buf.data(), size));
        },
        [&](size_t n) {
          Requests().reads.Add();
          Requests().bytes_served.Add(n);
          fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), n);
        });
}

void OnRelease(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void OnOpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Requests().opendir.Add();
  Reply(req, "opendir", ino, [&] { return Fs(req).OpenDir(ino); },
        [&](const DirHandle& listing) {
          auto handle = std::make_unique<DirHandle>(listing);
          fi->fh = reinterpret_cast<uint64_t>(handle.get());
          fi->keep_cache = 1;
          fi->cache_readdir = 1;  // listings never change: the kernel may cache them
          // If the reply fails (the request was interrupted) no releasedir will come.
          if (fuse_reply_open(req, fi) == 0) handle.release();
        });
}

void OnReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Requests().readdir.Add();
  Reply(req, "readdir", ino,
        [&]() -> Result<std::string> {
          LAZYFS_ASSIGN_OR_RETURN(DirHandle listing, HandleOf(req, ino, fi));
          return FillDir(req, *listing, off, size, /*plus=*/false);
        },
        [&](const std::string& b) { fuse_reply_buf(req, b.data(), b.size()); });
}

void OnReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Requests().readdirplus.Add();
  Reply(req, "readdirplus", ino,
        [&]() -> Result<std::string> {
          LAZYFS_ASSIGN_OR_RETURN(DirHandle listing, HandleOf(req, ino, fi));
          return FillDir(req, *listing, off, size, /*plus=*/true);
        },
        [&](const std::string& b) { fuse_reply_buf(req, b.data(), b.size()); });
}

void OnReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OnReadLink(fuse_req_t req, fuse_ino_t ino) {
  Requests().readlink.Add();
  Reply(req, "readlink", ino, [&] { return Fs(req).ReadLink(ino); },
        [&](const std::string& target) { fuse_reply_readlink(req, target.c_str()); });
}

void ReplyXattr(fuse_req_t req, size_t size, const XattrReply& r) {
  if (size == 0) {
    fuse_reply_xattr(req, r.size);
  } else {
    fuse_reply_buf(req, r.data.data(), r.data.size());
  }
}

void OnGetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Reply(req, "getxattr", ino, [&] { return Fs(req).GetXattr(ino, name, size); },
        [&](const XattrReply& r) { ReplyXattr(req, size, r); });
}

void OnListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Reply(req, "listxattr", ino, [&] { return Fs(req).ListXattr(ino, size); },
        [&](const XattrReply& r) { ReplyXattr(req, size, r); });
}

void OnStatFs(fuse_req_t req, fuse_ino_t ino) {
  Reply(req, "statfs", ino, [&]() -> Result<struct statvfs> { return Fs(req).StatFs(); },
        [&](const struct statvfs& st) { fuse_reply_statfs(req, &st); });
}

void OnAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  Reply(req, "access", ino, [&] { return Fs(req).Access(ino, mask); },
        [&] { fuse_reply_err(req, 0); });
}

// The stats channel (fs/stats_channel.h): the one ioctl lazyfs answers, on the root only.
void OnIoctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void*, fuse_file_info*,
             unsigned, const void*, size_t, size_t out_size) {
  if (ino != FUSE_ROOT_ID || cmd != kStatsIoctl) {
    fuse_reply_err(req, ENOTTY);
    return;
  }
  Reply(req, "ioctl", ino,
        [&]() -> Result<std::string> {
          const std::string json = StatsJson();
          StatsIoctlReply reply;
          if (out_size < sizeof(reply) || json.size() > sizeof(reply.json)) {
            return Status(StatusCode::kResourceExhausted,
                          "stats of " + std::to_string(json.size()) +
                              " bytes do not fit the reply",
                          E2BIG);
          }
          std::string out(sizeof(reply), '\0');
          reply.magic = kStatsMagic;
          reply.length = static_cast<uint32_t>(json.size());
          std::memcpy(out.data(), &reply, offsetof(StatsIoctlReply, json));
          std::memcpy(out.data() + offsetof(StatsIoctlReply, json), json.data(), json.size());
          out.resize(offsetof(StatsIoctlReply, json) + json.size());
          return out;
        },
        [&](const std::string& out) { fuse_reply_ioctl(req, 0, out.data(), out.size()); });
}

// ---- write operations: all EROFS ----

void OnSetAttr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) {
  ReplyReadOnly(req, "setattr");
}
void OnMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) {
  ReplyReadOnly(req, "mknod");
}
void OnMkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { ReplyReadOnly(req, "mkdir"); }
void OnUnlink(fuse_req_t req, fuse_ino_t, const char*) { ReplyReadOnly(req, "unlink"); }
void OnRmdir(fuse_req_t req, fuse_ino_t, const char*) { ReplyReadOnly(req, "rmdir"); }
void OnSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) {
  ReplyReadOnly(req, "symlink");
}
void OnRename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned int) {
  ReplyReadOnly(req, "rename");
}
void OnLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { ReplyReadOnly(req, "link"); }
void OnWrite(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) {
  ReplyReadOnly(req, "write");
}
void OnCreate(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) {
  ReplyReadOnly(req, "create");
}
void OnSetXattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
  ReplyReadOnly(req, "setxattr");
}
void OnRemoveXattr(fuse_req_t req, fuse_ino_t, const char*) {
  ReplyReadOnly(req, "removexattr");
}
void OnFallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) {
  ReplyReadOnly(req, "fallocate");
}
void OnCopyFileRange(fuse_req_t req, fuse_ino_t, off_t, fuse_file_info*, fuse_ino_t, off_t,
                     fuse_file_info*, size_t, int) {
  ReplyReadOnly(req, "copy_file_range");
}

const fuse_lowlevel_ops& Ops() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof(o));
    o.init = OnInit;
    o.lookup = OnLookup;
    o.forget = OnForget;
    o.forget_multi = OnForgetMulti;
    o.getattr = OnGetAttr;
    o.open = OnOpen;
    o.read = OnRead;
    o.release = OnRelease;
    o.opendir = OnOpenDir;
    o.readdir = OnReadDir;
    o.readdirplus = OnReadDirPlus;
    o.releasedir = OnReleaseDir;
    o.readlink = OnReadLink;
    o.getxattr = OnGetXattr;
    o.listxattr = OnListXattr;
    o.statfs = OnStatFs;
    o.access = OnAccess;
    o.ioctl = OnIoctl;
    o.setattr = OnSetAttr;
    o.mknod = OnMknod;
    o.mkdir = OnMkdir;
    o.unlink = OnUnlink;
    o.rmdir = OnRmdir;
    o.symlink = OnSymlink;
    o.rename = OnRename;
    o.link = OnLink;
    o.write = OnWrite;
    o.create = OnCreate;
    o.setxattr = OnSetXattr;
    o.removexattr = OnRemoveXattr;
    o.fallocate = OnFallocate;
    o.copy_file_range = OnCopyFileRange;
    return o;
  }();
  return ops;
}

// ---- the session ----

// Exit() interrupts the loop thread's wait with this signal; its handler does nothing, and is
// installed without SA_RESTART so the wait returns EINTR and the loop sees the exit flag.
int WakeSignal() { return SIGRTMIN + 2; }

void InstallWakeHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(WakeSignal(), &sa, nullptr);
  });
}

struct SessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};

// Owns a fuse_args vector.
class FuseArgs {
 public:
  FuseArgs() = default;
  ~FuseArgs() { fuse_opt_free_args(&args_); }
  FuseArgs(const FuseArgs&) = delete;
  FuseArgs& operator=(const FuseArgs&) = delete;
  Status Add(const std::string& arg) {
    if (fuse_opt_add_arg(&args_, arg.c_str()) != 0) return ResourceExhaustedError("fuse args");
    return Status::Ok();
  }
  fuse_args* get() { return &args_; }

 private:
  fuse_args args_ = FUSE_ARGS_INIT(0, nullptr);
};

class FuseSession final : public Session {
 public:
  FuseSession(const index::Tree& tree, const MountOptions& options)
      : cached_(tree, options.metadata_cache_entries), fs_(cached_), options_(options) {}

  ~FuseSession() override {
    Exit();
    UnmountOnce();
  }

  Status Start() {
    const std::string& mp = options_.mountpoint;
    const std::string what = "while mounting lazyfs on " + mp;
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      return Status(StatusCode::kUnavailable,
                    what + ": FUSE is unavailable: /dev/fuse: " + std::strerror(errno), errno);
    }
    struct stat st;
    if (::stat(mp.c_str(), &st) != 0) return ErrnoError(errno, what + ": mountpoint");
    if (!S_ISDIR(st.st_mode)) {
      return Status(StatusCode::kFailedPrecondition, what + ": mountpoint is not a directory",
                    ENOTDIR);
    }
    std::string real_mp = NormalizePath(mp);
    if (char* real = ::realpath(mp.c_str(), nullptr)) {
      real_mp = real;
      std::free(real);
    }
    LAZYFS_ASSIGN_OR_RETURN(const std::string opts, MountOptionString(options_));
    FuseArgs args;
    LAZYFS_RETURN_IF_ERROR(args.Add("lazyfs"));
    LAZYFS_RETURN_IF_ERROR(args.Add("-o"));
    LAZYFS_RETURN_IF_ERROR(args.Add(opts));
    se_.reset(fuse_session_new(args.get(), &Ops(), sizeof(fuse_lowlevel_ops), &fs_));
    if (!se_) {
      return InvalidArgumentError(what + ": libfuse rejected the options \"" + opts +
                                  "\" (its message is above)");
    }
    InstallWakeHandler();
    if (fuse_session_mount(se_.get(), mp.c_str()) != 0) {
      return UnavailableError(what + ": the mount failed (libfuse's message is above; mounting "
                                     "needs /dev/fuse and either root or fusermount3)");
    }
    mounted_ = true;
    RaiseReadahead(real_mp, options_.readahead_kib);
    return Status::Ok();
  }

  Status Run() override {
    {
      std::lock_guard lock(mu_);
      if (ran_) return FailedPreconditionError("Session::Run called twice");
      ran_ = true;
      if (exit_requested_) {
        UnmountOnce();
        return Status::Ok();
      }
      running_ = true;
      loop_thread_ = pthread_self();
    }
    // The wake signal must reach this thread even if the caller blocks it; the workers the loop
    // starts inherit this mask, which is harmless since the signal is only ever thread-directed.
    sigset_t wake, saved;
    sigemptyset(&wake);
    sigaddset(&wake, WakeSignal());
    pthread_sigmask(SIG_UNBLOCK, &wake, &saved);
    std::thread watcher([this] { CancelReadsOnExit(); });
    const int rc = Loop();
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    {
      std::lock_guard lock(mu_);
      running_ = false;
    }
    stopped_.notify_all();
    watcher.join();
    UnmountOnce();
    // The loop returns 0, -errno, or the number of a signal that ended it (not an error).
    if (rc < 0) return ErrnoError(-rc, "while serving lazyfs on " + options_.mountpoint);
    return Status::Ok();
  }

  void Exit() override {
    std::unique_lock lock(mu_);
    exit_requested_ = true;
    if (se_) fuse_session_exit(se_.get());
    if (!running_ || pthread_equal(pthread_self(), loop_thread_)) return;
    // The loop checks the exit flag, then sleeps in sem_wait; a signal that lands between the
    // two is lost, so keep waking it until it reports that it stopped (bounded, ~5 s).
    for (int i = 0; running_ && i < 500; ++i) {
      pthread_kill(loop_thread_, WakeSignal());
      stopped_.wait_for(lock, std::chrono::milliseconds(10));
    }
    if (running_) {
      LAZYFS_LOG(kWarn, kTag, "the session loop on %s did not stop after Exit()",
                 options_.mountpoint.c_str());
    }
  }

 private:
  int Loop() {
    const unsigned threads = options_.max_threads == 0 ? 1 : options_.max_threads;
#ifdef LAZYFS_FUSE_LOOP_CFG
    std::unique_ptr<fuse_loop_config, void (*)(fuse_loop_config*)> config(
        fuse_loop_cfg_create(), fuse_loop_cfg_destroy);
    if (!config) return -ENOMEM;
    fuse_loop_cfg_set_max_threads(config.get(), threads);
    fuse_loop_cfg_set_idle_threads(config.get(), threads);
    fuse_loop_cfg_set_clone_fd(config.get(), options_.clone_fd ? 1 : 0);
    return fuse_session_loop_mt(se_.get(), config.get());
#else
    // Before libfuse 3.12 the thread count is libfuse's (10); max_threads bounds idle workers.
    fuse_loop_config config;
    std::memset(&config, 0, sizeof(config));
    config.clone_fd = options_.clone_fd ? 1 : 0;
    config.max_idle_threads = threads;
    return fuse_session_loop_mt(se_.get(), &config);
#endif
  }

  // Once the session is ending (Exit, an unmount, a connection the kernel aborted), the loop
  // joins its workers; one waiting on a registry that stalls would keep the daemon alive until
  // its read deadline. Cancelling the tree's reads ends such waits now (the readers get EIO).
  void CancelReadsOnExit() {
    {
      std::unique_lock lock(mu_);
      while (running_ && !fuse_session_exited(se_.get())) {
        stopped_.wait_for(lock, std::chrono::milliseconds(50));
      }
    }
    cached_.CancelReads();
  }

  // fuse_session_unmount: umount2(MNT_DETACH) for root, fusermount3 -u otherwise.
  void UnmountOnce() {
    if (mounted_ && se_) {
      fuse_session_unmount(se_.get());
      mounted_ = false;
    }
  }

  CachedTree cached_;
  FileSystem fs_;
  const MountOptions options_;
  std::unique_ptr<fuse_session, SessionDeleter> se_;
  bool mounted_ = false;  // touched by Start, Run's end and the destructor, never concurrently

  std::mutex mu_;
  std::condition_variable stopped_;
  bool ran_ = false;             // GUARDED_BY(mu_)
  bool running_ = false;         // GUARDED_BY(mu_)
  bool exit_requested_ = false;  // GUARDED_BY(mu_)
  pthread_t loop_thread_{};      // GUARDED_BY(mu_)
};

}  // namespace

Result<std::unique_ptr<Session>> Session::Mount(const index::Tree& tree,
                                                const MountOptions& options) {
  auto session = std::make_unique<FuseSession>(tree, options);
  LAZYFS_RETURN_IF_ERROR(session->Start());
  return std::unique_ptr<Session>(std::move(session));
}

}  // namespace lazyfs::fs
