// What the end-to-end suites that need a registry share: the checks every such suite makes
// first (root, /dev/fuse, the lazyfs binary), and a suite-wide registry and scratch directory,
// stopped and removed when the suite's world is destroyed.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "base/fd.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/registry.h"

namespace lazyfs::testing {

struct SuiteWorld {
  std::unique_ptr<Registry> registry;
  std::string work;
  virtual ~SuiteWorld() {
    registry.reset();
    if (!work.empty()) RemoveTree(work).IgnoreError();
  }
};

// Fails the calling SetUpTestSuite (use ASSERT_NO_FATAL_FAILURE) unless the machine can run the
// suite, then starts w's registry and makes its scratch directory /tmp/PREFIX-XXXXXX. Suites
// that only loop-mount (no FUSE) pass need_fuse = false.
inline void StartSuiteWorld(SuiteWorld& w, const std::string& prefix, bool need_fuse = true) {
  ASSERT_EQ(::geteuid(), 0u) << "end-to-end tests mount FUSE and loop devices: run them as root";
  if (need_fuse) {
    ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0)
        << "/dev/fuse is missing or not accessible: FUSE mounts are impossible here";
  }
  ASSERT_EQ(::access(LazyfsBinary().c_str(), X_OK), 0) << "no lazyfs binary at " << LazyfsBinary();
  auto reg = Registry::Start();
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  w.registry = std::move(*reg);
  w.work = MakeTempDir(prefix);
}

}  // namespace lazyfs::testing
