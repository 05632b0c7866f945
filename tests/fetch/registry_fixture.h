// A gtest fixture base sharing one real docker-registry among a suite's tests.
#pragma once

#include <gtest/gtest.h>

#include "tests/support/registry.h"

namespace lazyfs::fetch::testing {

class SharedRegistryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto r = lazyfs::testing::Registry::Start();
    ASSERT_TRUE(r.ok()) << "cannot start docker-registry: " << r.status().message();
    registry_ = r->release();
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(registry_, nullptr) << "the registry did not start"; }

  static inline lazyfs::testing::Registry* registry_ = nullptr;
};

}  // namespace lazyfs::fetch::testing
