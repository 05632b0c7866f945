// An index::Tree that passes every call to another tree: tests derive from it and override only
// the calls they count, fail or corrupt. Thread-safe when the wrapped tree is.
#pragma once

#include "index/tree.h"

namespace lazyfs::testing {

class ForwardingTree : public index::Tree {
 public:
  explicit ForwardingTree(const index::Tree& base) : base_(base) {}
  Result<index::Attr> GetAttr(uint64_t ino) const override { return base_.GetAttr(ino); }
  Result<index::Attr> Lookup(uint64_t parent, std::string_view name) const override {
    return base_.Lookup(parent, name);
  }
  Result<std::vector<index::DirEntry>> ReadDir(uint64_t ino) const override {
    return base_.ReadDir(ino);
  }
  Result<std::string> ReadLink(uint64_t ino) const override { return base_.ReadLink(ino); }
  Result<std::vector<index::Xattr>> ListXattrs(uint64_t ino) const override {
    return base_.ListXattrs(ino);
  }
  Result<Digest> ContentDigest(uint64_t ino) const override { return base_.ContentDigest(ino); }
  Result<ContentLayout> Layout(uint64_t ino) const override { return base_.Layout(ino); }
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    return base_.Read(ino, offset, out);
  }
  index::TreeStats Stats() const override { return base_.Stats(); }
  void CancelReads() const override { base_.CancelReads(); }

 protected:
  const index::Tree& base_;
};

}  // namespace lazyfs::testing
