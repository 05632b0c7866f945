// The command line: every subcommand's --help, and ls/stat/cat/diff reading images without a
// mount, checked against the image spec's expected tree.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/digest.h"
#include "base/fd.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"

namespace lazyfs::testing {
namespace {

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(LazyfsBinary().c_str(), X_OK), 0) << "no lazyfs binary at " << LazyfsBinary();
    dir_ = MakeTempDir("lazyfs-cli-test");
    store_ = dir_ + "/store";
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }

  CommandResult Lazyfs(std::vector<std::string> args) {
    args.insert(args.begin() + 1, {"--store", store_, "-q"});
    return RunLazyfs(args);
  }
  // Writes `spec` as an OCI layout and returns its reference.
  std::string Layout(const ImageSpec& spec, const std::string& name) {
    auto d = WriteOciLayout(spec, dir_ + "/" + name, name);
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    return "oci:" + dir_ + "/" + name + ":" + name;
  }

  std::string dir_, store_;
};

// The subcommands `lazyfs --help` lists.
std::vector<std::string> Subcommands() {
  CommandResult r = RunLazyfs({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> subs;
  std::istringstream in(r.out);
  std::string line;
  bool in_list = false;
  while (std::getline(in, line)) {
    if (line.starts_with("Subcommands:")) {
      in_list = true;
      continue;
    }
    // Each subcommand line is "  NAME  description"; continuation lines are indented deeper.
    if (in_list && line.size() > 2 && line[0] == ' ' && line[1] == ' ' && line[2] != ' ') {
      subs.push_back(line.substr(2, line.find(' ', 2) - 2));
    }
  }
  return subs;
}

TEST_F(CliTest, EverySubcommandHasHelpWithExamples) {
  const auto subs = Subcommands();
  const std::set<std::string> listed(subs.begin(), subs.end());
  for (const char* required : {"mount", "umount", "materialize", "inspect", "ls", "cat", "stat",
                               "diff"}) {
    EXPECT_TRUE(listed.count(required)) << "lazyfs --help does not list " << required;
  }
  for (const auto& sub : subs) {
    SCOPED_TRACE(sub);
    CommandResult r = RunLazyfs({sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Example"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lazyfs " + sub), std::string::npos) << "no example runs " << sub;
  }
  CommandResult bad = RunLazyfs({"ls", "--no-such-option"});
  EXPECT_EQ(bad.exit_code, 2) << "usage errors exit 2";
}

TEST_F(CliTest, LsStatAndCatShowTheImageAsItsLayersSay) {
  const ImageSpec spec = FoundationSpec();
  const std::string ref = Layout(spec, "foundation");
  auto expected = ExpectedListing(spec);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();

  CommandResult ls = Lazyfs({"ls", "-R", "--json", ref, "/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  const auto entries = nlohmann::json::parse(ls.out);
  std::map<std::string, nlohmann::json> by_path;
  for (const auto& e : entries) by_path[e["path"].get<std::string>()] = e;
  EXPECT_EQ(by_path.size() + 1, expected->size()) << "every entry but the root, once";

  int files_checked = 0;
  for (const auto& [path, want] : *expected) {
    if (path == "/") continue;
    SCOPED_TRACE(path);
    ASSERT_TRUE(by_path.count(path)) << "ls -R does not list it";
    const nlohmann::json& got = by_path[path];
    EXPECT_EQ(got["type"].get<std::string>(), std::string(1, want.type == 'f' ? '-' : want.type));
    EXPECT_EQ(std::stoul(got["mode"].get<std::string>(), nullptr, 8), want.mode);
    EXPECT_EQ(got["uid"].get<uint32_t>(), want.uid);
    EXPECT_EQ(got["gid"].get<uint32_t>(), want.gid);
    EXPECT_EQ(got["nlink"].get<uint32_t>(), want.nlink);
    EXPECT_EQ(got["mtime"].get<int64_t>(), want.mtime_sec);
    if (want.type == 'l') {
      EXPECT_EQ(got["target"].get<std::string>(), want.target);
    }
    if (want.type == 'c' || want.type == 'b') {
      EXPECT_EQ(got["rdev"][0].get<uint32_t>(), want.rdev_major);
      EXPECT_EQ(got["rdev"][1].get<uint32_t>(), want.rdev_minor);
    }
    if (want.type != 'f') continue;
    EXPECT_EQ(got["size"].get<uint64_t>(), want.size);
    EXPECT_EQ(got["digest"].get<std::string>(), "sha256:" + want.sha256);
    // cat streams the content, verified; its sha256 is the listing's.
    CommandResult cat = Lazyfs({"cat", ref, path});
    ASSERT_EQ(cat.exit_code, 0) << cat.err;
    EXPECT_EQ(Sha256Of(cat.out).Hex(), want.sha256);
    ++files_checked;
  }
  EXPECT_GT(files_checked, 5);

  // stat describes a symlink itself; -L follows it inside the image.
  for (const auto& [path, want] : *expected) {
    if (want.type != 'l') continue;
    CommandResult st = Lazyfs({"stat", "--json", ref, path});
    ASSERT_EQ(st.exit_code, 0) << st.err;
    EXPECT_EQ(nlohmann::json::parse(st.out)["type"], "l");
    break;
  }
  CommandResult missing = Lazyfs({"cat", ref, "/no/such/file"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("/no/such/file"), std::string::npos) << missing.err;
  EXPECT_EQ(missing.err.find('\n'), missing.err.size() - 1) << "one line: " << missing.err;
}

TEST_F(CliTest, DiffNamesWhatWasAddedRemovedAndModified) {
  const ImageSpec a = FoundationSpec();
  auto listing = ExpectedListing(a);
  ASSERT_TRUE(listing.ok());
  // Two single-link regular files without xattrs at the top level of some directory: one
  // removed, one rewritten with another owner, mode and content.
  std::vector<std::string> plain;
  for (const auto& [path, e] : *listing) {
    if (e.type == 'f' && e.nlink == 1 && e.xattrs.empty()) plain.push_back(path);
  }
  ASSERT_GE(plain.size(), 2u);
  const std::string removed = plain[0], modified = plain[1];
  ImageSpec b = a;
  Layer top;
  top.entries = {Dir("added", 0755), File("added/file", "new\n", 0644),
                 Whiteout(removed.substr(1)), File(modified.substr(1), "rewritten\n", 0600, 7, 8)};
  b.layers.push_back(top);
  const std::string ref_a = Layout(a, "a"), ref_b = Layout(b, "b");

  CommandResult same = Lazyfs({"diff", ref_a, ref_a});
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;
  EXPECT_EQ(same.out, "");

  CommandResult d = Lazyfs({"diff", "--json", ref_a, ref_b});
  ASSERT_EQ(d.exit_code, 1) << "diff exits 1 when the trees differ: " << d.err;
  std::map<std::string, nlohmann::json> changes;
  for (const auto& c : nlohmann::json::parse(d.out)) changes[c["path"].get<std::string>()] = c;
  ASSERT_TRUE(changes.count("/added"));
  EXPECT_EQ(changes["/added"]["change"], "added");
  EXPECT_EQ(changes["/added/file"]["change"], "added");
  EXPECT_EQ(changes[removed]["change"], "removed");
  EXPECT_EQ(changes[modified]["change"], "modified");
  EXPECT_EQ(changes[modified]["fields"],
            nlohmann::json({"mode", "uid", "gid", "size", "digest"}));
  EXPECT_EQ(changes[modified]["after"]["uid"], 7);
  // The root gained a subdirectory: its link count is the one other change.
  EXPECT_EQ(changes["/"]["fields"], nlohmann::json({"nlink"}));
  EXPECT_EQ(changes.size(), 5u) << d.out;

  CommandResult text = Lazyfs({"diff", ref_a, ref_b});
  EXPECT_EQ(text.exit_code, 1);
  EXPECT_NE(text.out.find("D " + removed), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("M " + modified + "  (0600 7:8; changed: mode"), std::string::npos)
      << text.out;
}

}  // namespace
}  // namespace lazyfs::testing
