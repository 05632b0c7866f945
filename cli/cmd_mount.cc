// lazyfs mount / umount.
//
// Without -f, mount forks first and does all the work (resolve, index, mount) in the child, which
// then detaches; the parent waits on a pipe until the mount is ready (or the child reports why it
// failed) so the command returns only once the mountpoint serves the image. Forking before any
// library starts threads (RocksDB, FUSE) keeps the child's state sane.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "base/fd.h"
#include "base/stats.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "fs/fs.h"

namespace lazyfs::cli {
namespace {

struct MountArgs {
  ImageOptions image;
  std::string ref;
  std::string mountpoint;
  bool foreground = false;
  bool allow_other = false;
  bool allow_setuid_and_devices = false;
  std::vector<std::string> fuse_options;
};

// SIGINT, SIGTERM and SIGHUP are blocked in every thread from the start, so that no thread that
// preparing the image starts (RocksDB's, the fetch pool's) takes one and dies of it with the
// mount left dangling, and one thread waits for them: before the mount serves, a signal ends the
// process as it would have; once it serves (`serving` set), it ends the session cleanly: reads
// in flight cancelled, unmounted, exit 0.
std::shared_ptr<std::atomic<fs::Session*>> TakeStopSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  auto serving = std::make_shared<std::atomic<fs::Session*>>(nullptr);
  std::thread([sigs, serving] {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0) return;
    if (fs::Session* s = serving->load()) {
      s->Exit();
      return;
    }
    ::_exit(128 + sig);
  }).detach();
  return serving;
}

// Resolves, indexes and mounts. On success `ready` is called once the kernel serves the mount.
Status MountAndServe(const MountArgs& args, const std::function<void()>& ready) {
  const auto serving = TakeStopSignals();
  LAZYFS_ASSIGN_OR_RETURN(PreparedImage image, PrepareImage(args.ref, args.image));
  LAZYFS_ASSIGN_OR_RETURN(OpenedTree opened, OpenTree(image, args.image));
  // `lazyfs stats` reports bytes fetched against this: the layers as the registry stores them.
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor descriptor, opened.index->GetImage(image.manifest));
  uint64_t compressed = 0;
  for (const LayerDescriptor& layer : descriptor.layers) compressed += layer.size;
  Counter(kStatImageBytes).Set(compressed);
  fs::MountOptions mo;
  mo.mountpoint = args.mountpoint;
  mo.allow_other = args.allow_other;
  mo.allow_setuid_and_devices = args.allow_setuid_and_devices;
  mo.fuse_options = args.fuse_options;
  mo.fsname = image.ref.ToString();
  LAZYFS_ASSIGN_OR_RETURN(auto session, fs::Session::Mount(*opened.tree, mo));
  serving->store(session.get());
  ready();
  Status served = session->Run();
  serving->store(nullptr);
  return served;
}

int RunMount(const MountArgs& args) {
  if (args.foreground) {
    Status s = MountAndServe(args, [] {});
    return s.ok() ? 0 : ReportError(s);
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return ReportError(ErrnoError(errno, "pipe"));
  Fd read_end(pipefd[0]), write_end(pipefd[1]);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return ReportError(ErrnoError(errno, "fork"));
  if (pid == 0) {
    read_end.Reset();
    ::setsid();
    Status s = MountAndServe(args, [&] {
      static const char kOk = 'K';
      WriteAll(write_end.get(), &kOk, 1).IgnoreError();
      write_end.Reset();
      // Detach from the terminal: the daemon has nothing more to say there.
      int devnull = ::open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        ::dup2(devnull, 0);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
        if (devnull > 2) ::close(devnull);
      }
    });
    if (!s.ok() && write_end.valid()) {
      std::string msg = "E" + s.message();
      WriteAll(write_end.get(), msg.data(), msg.size()).IgnoreError();
    }
    ::_exit(s.ok() ? 0 : 1);
  }
  write_end.Reset();
  std::string reply;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(read_end.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  if (!reply.empty() && reply[0] == 'K') return 0;
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  if (!reply.empty() && reply[0] == 'E') return ReportError(InternalError(reply.substr(1)));
  return ReportError(InternalError("the mount process exited before the mount was ready"));
}

}  // namespace

void RegisterMount(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<MountArgs>();
  CLI::App* cmd = app.add_subcommand(
      "mount",
      "Mount an image read-only over FUSE\n\n"
      "Owners, modes, times, devices and xattrs are those recorded in the image's layers.\n"
      "Examples:\n"
      "  lazyfs mount docker://registry.example:5000/app:1.2 /mnt/app\n"
      "  lazyfs mount --platform linux/arm64 alpine:3.20 /mnt/alpine\n"
      "  lazyfs mount -f oci:./layout:demo /mnt/demo     # stay in the foreground");
  AddImageOptions(*cmd, args->image);
  cmd->add_option("REF", args->ref,
                  "Image reference: docker://HOST/REPO[:TAG|@DIGEST], NAME[:TAG], oci:DIR[:TAG]")
      ->required();
  cmd->add_option("MOUNTPOINT", args->mountpoint, "An existing directory")->required();
  cmd->add_flag("-f,--foreground", args->foreground, "Serve in the foreground until unmounted");
  cmd->add_flag("--allow-other", args->allow_other,
                "Let other users see the mount; the kernel then enforces the image's modes "
                "(default_permissions)");
  cmd->add_flag("--allow-setuid-and-devices", args->allow_setuid_and_devices,
                "Let the image's setuid/setgid bits and device nodes take effect (suid,dev); "
                "by default the mount is nosuid,nodev");
  cmd->add_option("-o", args->fuse_options,
                  "Extra FUSE mount options; allow_other here also turns on "
                  "default_permissions, and suid/dev need --allow-setuid-and-devices")
      ->delimiter(',');
  cmd->add_option("--cache-size", args->image.cache_size,
                  "Content cache limit (e.g. 2G, 500M); least recently used content is evicted "
                  "past it (default: no limit)")
      ->transform(CLI::AsSizeValue(false));
  cmd->add_option("--read-timeout", args->image.read_timeout_s,
                  "Seconds a read of uncached content keeps retrying an unreachable registry "
                  "before it fails with EIO")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  args->image.prefetch = index::PrefetchMode::kLandmark;
  cmd->add_option("--prefetch", args->image.prefetch,
                  "Fetch in the background, at low priority: none; landmark (the files eStargz "
                  "layers list before their prefetch landmark); all (every file of the image)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, index::PrefetchMode>{{"none", index::PrefetchMode::kNone},
                                                     {"landmark", index::PrefetchMode::kLandmark},
                                                     {"all", index::PrefetchMode::kAll}}))
      ->default_str("landmark");
  cmd->callback([args, &exit_code] { exit_code = RunMount(*args); });

  auto mp = std::make_shared<std::string>();
  auto lazy = std::make_shared<bool>(false);
  CLI::App* um = app.add_subcommand("umount", "Unmount a lazyfs mount\n\nExample:\n"
                                              "  lazyfs umount /mnt/app");
  um->add_option("MOUNTPOINT", *mp, "The mountpoint")->required();
  um->add_flag("-l,--lazy", *lazy, "Detach now, clean up when no longer busy");
  um->callback([mp, lazy, &exit_code] {
    Status s = fs::Unmount(*mp, *lazy);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace lazyfs::cli
