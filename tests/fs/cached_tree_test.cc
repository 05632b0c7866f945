// CachedTree: repeats are answered from memory, misses of existing directories are remembered,
// other errors are not, and the bound holds. A counting wrapper shows what reached the tree.
#include "fs/cached_tree.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/forwarding_tree.h"
#include "tests/support/memory_tree.h"

namespace lazyfs::fs {
namespace {

using testing::MemNode;
using testing::MemoryTree;

// Counts the metadata calls that reach the tree.
class CountingTree final : public testing::ForwardingTree {
 public:
  using ForwardingTree::ForwardingTree;
  Result<index::Attr> GetAttr(uint64_t ino) const override {
    calls++;
    return base_.GetAttr(ino);
  }
  Result<index::Attr> Lookup(uint64_t p, std::string_view n) const override {
    calls++;
    return base_.Lookup(p, n);
  }
  Result<std::vector<index::DirEntry>> ReadDir(uint64_t ino) const override {
    calls++;
    return base_.ReadDir(ino);
  }
  Result<std::string> ReadLink(uint64_t ino) const override {
    calls++;
    return base_.ReadLink(ino);
  }
  Result<std::vector<index::Xattr>> ListXattrs(uint64_t ino) const override {
    calls++;
    return base_.ListXattrs(ino);
  }

  mutable std::atomic<int> calls{0};
};

std::vector<MemNode> Nodes(int files) {
  std::vector<MemNode> nodes;
  for (int i = 0; i < files; ++i) {
    MemNode n;
    n.path = "/d/f" + std::to_string(i);
    n.mode = S_IFREG | 0644;
    n.data = "content " + std::to_string(i);
    n.xattrs = {{"user.i", std::to_string(i)}};
    nodes.push_back(std::move(n));
  }
  MemNode link;
  link.path = "/link";
  link.mode = S_IFLNK | 0777;
  link.data = "d/f0";
  nodes.push_back(std::move(link));
  return nodes;
}

class CachedTreeTest : public ::testing::Test {
 protected:
  void Build(int files, size_t capacity) {
    auto tree = MemoryTree::Build(Nodes(files));
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    mem_ = std::move(*tree);
    counting_ = std::make_unique<CountingTree>(*mem_);
    cached_ = std::make_unique<CachedTree>(*counting_, capacity);
  }
  uint64_t DirIno() {
    auto d = mem_->Lookup(index::kRootIno, "d");
    EXPECT_TRUE(d.ok());
    return d.ok() ? d->ino : 0;
  }

  std::unique_ptr<MemoryTree> mem_;
  std::unique_ptr<CountingTree> counting_;
  std::unique_ptr<CachedTree> cached_;
};

TEST_F(CachedTreeTest, RepeatsDoNotReachTheTreeAndAnswerTheSame) {
  Build(10, 1000);
  const uint64_t d = DirIno();
  auto ask_everything = [&] {
    auto f = cached_->Lookup(d, "f3");
    EXPECT_TRUE(f.ok());
    EXPECT_EQ(f->size, 9u);  // "content 3"
    auto a = cached_->GetAttr(f->ino);
    EXPECT_TRUE(a.ok());
    EXPECT_EQ(a->ino, f->ino);
    auto l = cached_->ReadDir(d);
    EXPECT_TRUE(l.ok());
    EXPECT_EQ(l->size(), 10u);
    auto link = cached_->Lookup(index::kRootIno, "link");
    EXPECT_TRUE(link.ok());
    auto target = cached_->ReadLink(link->ino);
    EXPECT_TRUE(target.ok());
    EXPECT_EQ(*target, "d/f0");
    auto x = cached_->ListXattrs(f->ino);
    EXPECT_TRUE(x.ok());
    ASSERT_EQ(x->size(), 1u);
    EXPECT_EQ((*x)[0].value, "3");
  };
  ask_everything();
  const int first = counting_->calls.load();
  EXPECT_GT(first, 0);
  for (int i = 0; i < 5; ++i) ask_everything();
  EXPECT_EQ(counting_->calls.load(), first) << "repeated questions reached the tree";
}

TEST_F(CachedTreeTest, MissesInExistingDirectoriesAreRemembered) {
  Build(3, 1000);
  const uint64_t d = DirIno();
  auto miss = cached_->Lookup(d, "nope");
  ASSERT_FALSE(miss.ok());
  EXPECT_EQ(miss.status().code(), StatusCode::kNotFound);
  const int after_first = counting_->calls.load();
  for (int i = 0; i < 3; ++i) {
    miss = cached_->Lookup(d, "nope");
    ASSERT_FALSE(miss.ok());
    EXPECT_EQ(miss.status().code(), StatusCode::kNotFound);
  }
  EXPECT_EQ(counting_->calls.load(), after_first);
  // A missing parent is not an answer to keep: asked again each time.
  const int before = counting_->calls.load();
  EXPECT_FALSE(cached_->Lookup(999999, "x").ok());
  EXPECT_FALSE(cached_->Lookup(999999, "x").ok());
  EXPECT_GE(counting_->calls.load(), before + 2);
  // Errors are not kept either.
  EXPECT_FALSE(cached_->GetAttr(999999).ok());
  const int again = counting_->calls.load();
  EXPECT_FALSE(cached_->GetAttr(999999).ok());
  EXPECT_EQ(counting_->calls.load(), again + 1);
}

TEST_F(CachedTreeTest, TheBoundHoldsAndHotEntriesStay) {
  // 16 shards of 4 entries: far fewer than 2000 inodes.
  Build(2000, 64);
  const uint64_t d = DirIno();
  auto listing = cached_->ReadDir(d);  // 2001 entries: over the bound, never kept
  ASSERT_TRUE(listing.ok());
  ASSERT_EQ(listing->size(), 2000u);
  for (const auto& e : *listing) ASSERT_TRUE(cached_->GetAttr(e.ino).ok());
  const int after_sweep = counting_->calls.load();
  for (const auto& e : *listing) ASSERT_TRUE(cached_->GetAttr(e.ino).ok());
  // Most attributes were evicted by the sweep, so a second sweep goes back to the tree...
  EXPECT_GT(counting_->calls.load(), after_sweep + 1900);
  // ...and the oversized listing was not kept.
  const int before = counting_->calls.load();
  ASSERT_TRUE(cached_->ReadDir(d).ok());
  EXPECT_EQ(counting_->calls.load(), before + 1);
  // A hot entry asked for again and again stays.
  const uint64_t hot = (*listing)[0].ino;
  ASSERT_TRUE(cached_->GetAttr(hot).ok());
  const int hot_before = counting_->calls.load();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(cached_->GetAttr(hot).ok());
  EXPECT_EQ(counting_->calls.load(), hot_before);
}

TEST_F(CachedTreeTest, DisabledPassesEverythingThrough) {
  Build(3, 0);
  const uint64_t d = DirIno();
  ASSERT_TRUE(cached_->ReadDir(d).ok());
  ASSERT_TRUE(cached_->ReadDir(d).ok());
  EXPECT_EQ(counting_->calls.load(), 2);
}

TEST_F(CachedTreeTest, ConcurrentReadersGetConsistentAnswers) {
  Build(500, 200);  // small enough to evict while threads race
  const uint64_t d = DirIno();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const int k = (i * 7 + t * 13) % 500;
        auto f = cached_->Lookup(d, "f" + std::to_string(k));
        if (!f.ok() || f->size != ("content " + std::to_string(k)).size()) {
          wrong++;
          continue;
        }
        auto x = cached_->ListXattrs(f->ino);
        if (!x.ok() || x->size() != 1 || (*x)[0].value != std::to_string(k)) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace lazyfs::fs
