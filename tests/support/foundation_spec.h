// The foundation test image: three layers that exercise every merge rule and every file type
// the index, the mount and the ext4 writer must carry (whiteouts, an opaque directory, a
// directory replaced by a file and a file replaced by a directory, hardlinks within and across
// layers, a symlink chain, setuid/setgid/sticky bits, owners 1000:1000 and 65534, xattrs
// including security.capability, a fifo, devices, a 255-byte name, an empty file, a file of
// several MiB, a date past 2038), in gzip, zstd and uncompressed layers of three tar dialects.
#pragma once

#include <string>

#include "tests/support/image_builder.h"

namespace lazyfs::testing {

// Deterministic pseudo-random bytes (xorshift), so big files do not compress to nothing.
inline std::string PseudoRandomBytes(size_t n, uint64_t seed) {
  std::string out(n, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

inline ImageSpec FoundationSpec() {
  // A version-2 VFS capability (cap_net_raw in the permitted set), as setcap writes it.
  const std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                        "\x00\x00\x00\x00",
                        20);
  ImageSpec spec;
  Layer l1;
  l1.compression = Compression::kGzip;
  l1.format = TarFormat::kPax;
  Entry passwd = File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644);
  passwd.xattrs["user.origin"] = "layer one";
  Entry ping = File("usr/bin/ping", "#!/bin/sh\necho ping\n", 0755);
  ping.xattrs["security.capability"] = cap;
  Entry future = File("etc/future", "dated 2100\n", 0644);
  future.mtime = 4102444800;  // 2100-01-01
  l1.entries = {
      Dir("etc", 0755),
      passwd,
      File("etc/hostname", "layer-one\n"),
      File("etc/conf.d", "a file that layer 3 turns into a directory\n"),
      future,
      Dir("usr", 0755),
      Dir("usr/bin", 0755),
      File("usr/bin/tool", PseudoRandomBytes(70000, 1), 04755),
      Hardlink("usr/bin/tool-link", "usr/bin/tool"),
      File("usr/bin/sgid", "setgid\n", 02755, 0, 50),
      ping,
      Dir("tmp", 01777),
      Dir("home", 0755),
      Dir("home/user", 0750, 1000, 1000),
      File("home/user/notes", "mine\n", 0600, 1000, 1000),
      File("srv/nobody", "owned by nobody\n", 0640, 65534, 65534),
      Dir("var/lib/old", 0755),
      File("var/lib/old/a", "hidden by an opaque dir\n"),
      Dir("var/lib/old/sub", 0755),
      File("var/lib/old/sub/b", "also hidden\n"),
      Dir("opt/app", 0755),
      File("opt/app/config", "replaced with its directory\n"),
      File("data/big", PseudoRandomBytes(6 << 20, 2), 0644),
      File("data/empty", "", 0644),
      File("data/target.txt", "end of the chain\n"),
      Symlink("data/link2", "target.txt"),
      Symlink("data/link1", "link2"),
      Symlink("data/abs", "/etc/passwd"),
      CharDev("dev/null", 1, 3, 0666),
      BlockDev("dev/loop0", 7, 0, 0660),
      Fifo("run/fifo", 0600),
      File("long/" + std::string(255, 'n'), "a name of 255 bytes\n"),
  };
  Layer l2;
  l2.compression = Compression::kZstd;
  l2.format = TarFormat::kPax;
  Entry motd = File("etc/motd", "from layer two\n", 0644);
  motd.xattrs["user.layer"] = "2";
  motd.xattrs["trusted.note"] = "t";
  l2.entries = {
      Whiteout("etc/hostname"),
      motd,
      Opaque("var/lib/old"),
      File("var/lib/old/c", "the only child left\n"),
      File("opt/app", "a file where a directory was\n", 0644),
      Hardlink("usr/bin/tool-again", "usr/bin/tool"),
      File("srv/sticky-owned", "x", 0644, 1000, 1000),
  };
  Layer l3;
  l3.compression = Compression::kNone;
  l3.format = TarFormat::kGnu;
  l3.entries = {
      Dir("etc/conf.d", 0755),
      File("etc/conf.d/one.conf", "a directory where a file was\n"),
      Whiteout("dev/loop0"),
      File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
           0644),
      Dir("deep/a/b/c/d/e/f/g/h", 0700, 1000, 1000),
      File("deep/a/b/c/d/e/f/g/h/leaf", "deep\n"),
  };
  spec.layers = {l1, l2, l3};
  return spec;
}

}  // namespace lazyfs::testing
