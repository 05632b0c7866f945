// The command line: every subcommand's --help, and ls/stat/cat/diff reading images without a
// mount, checked against the image spec's expected tree.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/digest.h"
#include "base/fd.h"
#include "base/text.h"
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
      subs.push_back(line.substr(2, line.find_first_of(" ,", 2) - 2));  // "gc, prune": gc
    }
  }
  return subs;
}

TEST_F(CliTest, EverySubcommandHasHelpWithExamples) {
  const auto subs = Subcommands();
  const std::set<std::string> listed(subs.begin(), subs.end());
  for (const char* required : {"mount", "umount", "materialize", "verify", "inspect", "ls", "cat",
                               "stat", "diff", "images", "rmi", "gc", "fsck"}) {
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

  // inspect: the manifest lazyfs resolved is the one written, with every layer.
  CommandResult inspect = Lazyfs({"inspect", ref});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  const auto info = nlohmann::json::parse(inspect.out);
  EXPECT_EQ(info["manifest_digest"], WriteOciLayout(spec, dir_ + "/foundation", "foundation")->ToString());
  EXPECT_EQ(info["layers"].size(), spec.layers.size());
  const auto dirs = std::count_if(expected->begin(), expected->end(),
                                  [](const auto& e) { return e.second.type == 'd'; });
  EXPECT_EQ(info["tree"]["directories"].get<int64_t>(), dirs);

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

// The bytes an outside string in --json output stands for: its object's "bytes_escaped" says
// whether it was written with \xNN escapes (docs/security.md, "Output").
std::string Bytes(const nlohmann::json& object, const std::string& text) {
  if (!object.value("bytes_escaped", false)) return text;
  auto bytes = UnescapeBytes(text);
  EXPECT_TRUE(bytes.ok()) << text;
  return bytes.ok() ? *bytes : text;
}
std::string Field(const nlohmann::json& object, const char* key) {
  return Bytes(object, object.at(key).get<std::string>());
}

TEST_F(CliTest, NamesThatAreNotUtf8OrCarryControlsNeverBreakOutput) {
  const std::string bad = "bad\xff\xfename", nl = "nl\n\x1b[31mred",
                    c1 = "c1\xc2\x9b"
                         "2J",
                    slash = "back\\xffslash", clear = "\x1b[2J\x1b]0;owned\x07";
  Layer names;
  names.format = TarFormat::kGnu;  // names and targets byte for byte, no pax charset
  names.entries = {Raw(bad, EntryType::kFile, "x"), Raw(nl, EntryType::kFile, "y"),
                   Raw(c1, EntryType::kFile, "z"),  Raw(slash, EntryType::kFile, "w"),
                   Symlink("link", clear),          Symlink("link2", "to\xff")};
  Layer attrs;
  Entry with_xattr = File("xattr", "v");
  // (The tar writer percent-encodes control bytes in xattr names, so the names' escaping is
  // left to tests/fuzz/fuzz_output.cc; the value is bytes.)
  with_xattr.xattrs["user.note"] = "\xff";
  attrs.entries = {with_xattr};
  ImageSpec spec;
  spec.layers = {names, attrs};
  // The layout directory's name is in the reference inspect prints: not UTF-8 either.
  auto d = WriteOciLayout(spec, dir_ + "/lay\xffout", "names");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const std::string ref = "oci:" + dir_ + "/lay\xffout:names";
  const std::string ref_plain = Layout(ImageSpec{{Layer{{File("plain", "p")}}}}, "plain");

  CommandResult ls = Lazyfs({"ls", "-R", "--json", ref, "/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  std::map<std::string, nlohmann::json> by_path;
  for (const auto& e : nlohmann::json::parse(ls.out)) by_path[Field(e, "path")] = e;
  for (const std::string& name : {bad, nl, c1, slash, std::string("link"), std::string("link2")}) {
    EXPECT_TRUE(by_path.count("/" + name))
        << "ls --json lost " << HexEncode(name) << ": " << ls.out;
  }
  EXPECT_TRUE(by_path["/" + bad].value("bytes_escaped", false)) << ls.out;
  EXPECT_FALSE(by_path["/" + slash].contains("bytes_escaped")) << "valid UTF-8 is kept as is";
  EXPECT_EQ(by_path["/" + slash]["path"], "/" + slash);
  EXPECT_EQ(Field(by_path["/link"], "target"), clear);
  EXPECT_EQ(Field(by_path["/link2"], "target"), "to\xff");
  const nlohmann::json& x = by_path["/xattr"];
  ASSERT_TRUE(x.contains("xattrs_hex")) << ls.out;
  for (const auto& [name, value] : x["xattrs_hex"].items()) {
    EXPECT_EQ(Bytes(x, name), "user.note");
    EXPECT_EQ(value, "ff");
  }

  for (const std::string& path : {"/" + bad, "/" + nl, std::string("/link2")}) {
    SCOPED_TRACE(HexEncode(path));
    CommandResult st = Lazyfs({"stat", "--json", ref, path});
    ASSERT_EQ(st.exit_code, 0) << st.err;
    EXPECT_EQ(Field(nlohmann::json::parse(st.out), "path"), path);
    CommandResult text = Lazyfs({"stat", ref, path});
    ASSERT_EQ(text.exit_code, 0) << text.err;
    EXPECT_FALSE(HasTerminalControls(text.out)) << text.out;
  }

  CommandResult diff = Lazyfs({"diff", "--json", ref_plain, ref});
  ASSERT_EQ(diff.exit_code, 1) << diff.err;
  std::set<std::string> changed;
  for (const auto& c : nlohmann::json::parse(diff.out)) {
    changed.insert(Field(c, "path"));
    if (c.contains("after")) {
      EXPECT_EQ(Field(c["after"], "path"), Field(c, "path"));
    }
  }
  EXPECT_TRUE(changed.count("/" + bad) && changed.count("/" + nl)) << diff.out;

  CommandResult inspect = Lazyfs({"inspect", "--json", ref});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_EQ(Field(nlohmann::json::parse(inspect.out), "reference"), ref);

  // Text: one line per entry, nothing a terminal would obey.
  for (const std::vector<std::string>& args : {std::vector<std::string>{"ls", "-l", ref, "/"},
                                               {"ls", "-R", ref, "/"},
                                               {"diff", ref_plain, ref},
                                               {"stat", ref, "/link"}}) {
    SCOPED_TRACE(args[0] + " " + args[1]);
    CommandResult r = Lazyfs(args);
    EXPECT_LE(r.exit_code, 1) << r.err;
    EXPECT_FALSE(HasTerminalControls(r.out)) << r.out;
  }
  CommandResult ls_text = Lazyfs({"ls", ref, "/"});
  EXPECT_EQ(std::count(ls_text.out.begin(), ls_text.out.end(), '\n'), 7) << ls_text.out;
  EXPECT_NE(ls_text.out.find("nl\\x0a\\x1b[31mred\n"), std::string::npos) << ls_text.out;
  EXPECT_NE(ls_text.out.find("back\\x5cxffslash\n"), std::string::npos) << ls_text.out;
  // An error naming an outside path is one line without controls too.
  CommandResult missing = Lazyfs({"cat", ref, "/gone\x1b[2J\n"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;
  EXPECT_FALSE(HasTerminalControls(missing.err)) << missing.err;
}

TEST_F(CliTest, ImagesRmiAndFsckManageTheStore) {
  // Two images sharing their bottom layer.
  ImageSpec a = FoundationSpec();
  ImageSpec b = a;
  b.layers.resize(1);
  Layer top;
  top.entries = {File("only-in-b", "b\n")};
  b.layers.push_back(top);
  const std::string ref_a = Layout(a, "a"), ref_b = Layout(b, "b");
  ASSERT_EQ(Lazyfs({"cat", ref_a, "/etc/passwd"}).exit_code, 0);
  ASSERT_EQ(Lazyfs({"cat", ref_b, "/only-in-b"}).exit_code, 0);

  CommandResult images = RunLazyfs({"images", "--store", store_, "--json"});
  ASSERT_EQ(images.exit_code, 0) << images.err;
  auto listed = nlohmann::json::parse(images.out);
  ASSERT_EQ(listed.size(), 2u) << images.out;
  EXPECT_EQ(listed[0]["refs"][0], ref_a.substr(0, ref_a.rfind(':')) + ":a") << images.out;

  CommandResult fsck = RunLazyfs({"fsck", "--store", store_});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  EXPECT_NE(fsck.out.find("2 images"), std::string::npos) << fsck.out;

  // A damaged cached object: fsck names it and exits 1; --repair drops it; reads fetch again.
  std::string victim;
  for (const auto& e : std::filesystem::directory_iterator(store_ + "/content/sha256")) {
    victim = e.path();
    break;
  }
  ASSERT_FALSE(victim.empty());
  ASSERT_TRUE(WriteFileAtomic(victim, "not what the digest says").ok());
  fsck = RunLazyfs({"fsck", "--store", store_});
  EXPECT_EQ(fsck.exit_code, 1);
  EXPECT_NE(fsck.out.find(victim + ": content does not match its digest"), std::string::npos)
      << fsck.out;
  EXPECT_EQ(RunLazyfs({"fsck", "--store", store_, "--repair"}).exit_code, 1);
  fsck = RunLazyfs({"fsck", "--store", store_});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out;

  // rmi forgets a and keeps b whole, shared layer included.
  CommandResult rmi = RunLazyfs({"rmi", "--store", store_, ref_a});
  ASSERT_EQ(rmi.exit_code, 0) << rmi.err;
  listed = nlohmann::json::parse(RunLazyfs({"images", "--store", store_, "--json"}).out);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["manifest_digest"], WriteOciLayout(b, dir_ + "/b", "b")->ToString());
  CommandResult ls = Lazyfs({"ls", "-R", "--json", "--pull", "never", ref_b, "/"});
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_EQ(Lazyfs({"cat", ref_b, "/etc/passwd"}).out, "root:x:0:0:root:/root:/bin/sh\n");
  EXPECT_EQ(RunLazyfs({"fsck", "--store", store_}).exit_code, 0);
  CommandResult again = RunLazyfs({"rmi", "--store", store_, ref_a});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("no such image"), std::string::npos) << again.err;
}

TEST_F(CliTest, FsckOfAStoreWithNothingIndexedYetIsClean) {
  // What a first indexing killed before it created the index leaves: the store's directories.
  ASSERT_TRUE(MakeDirs(store_ + "/blobs/sha256", 0700).ok());
  CommandResult fsck = RunLazyfs({"fsck", "--store", store_});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  EXPECT_NE(fsck.out.find("index: none yet"), std::string::npos) << fsck.out;
  // No store at all is an error that names it.
  fsck = RunLazyfs({"fsck", "--store", dir_ + "/nowhere"});
  EXPECT_EQ(fsck.exit_code, 1);
  EXPECT_NE(fsck.err.find(dir_ + "/nowhere"), std::string::npos) << fsck.err;
}

TEST_F(CliTest, LsAndCatReadOciAndDockerArchives) {
  const ImageSpec spec = FoundationSpec();
  auto expected = ExpectedListing(spec);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();

  // oci-archive: the layout, tarred by tar(1).
  Layout(spec, "foundation");
  const std::string oci_tar = dir_ + "/foundation-oci.tar";
  CommandResult tar = RunCommand({"tar", "-C", dir_ + "/foundation", "-cf", oci_tar, "."});
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
  CommandResult ls = Lazyfs({"ls", "-R", "--json", "oci-archive:" + oci_tar + ":foundation", "/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  std::map<std::string, nlohmann::json> by_path;
  for (const auto& e : nlohmann::json::parse(ls.out)) by_path[e["path"].get<std::string>()] = e;
  EXPECT_EQ(by_path.size() + 1, expected->size()) << "every entry but the root, once";
  for (const auto& [path, want] : *expected) {
    if (path == "/") continue;
    SCOPED_TRACE(path);
    ASSERT_TRUE(by_path.count(path)) << "ls -R does not list it";
    EXPECT_EQ(by_path[path]["type"].get<std::string>(),
              std::string(1, want.type == 'f' ? '-' : want.type));
    if (want.type == 'f') {
      EXPECT_EQ(by_path[path]["digest"].get<std::string>(), "sha256:" + want.sha256);
    }
  }

  // docker-archive: the same image as `docker save` lays it out, tarred by tar(1).
  auto built = BuildImage(spec);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  const std::string save = dir_ + "/save";
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < built->layers.size(); ++i) {
    const std::string member = std::to_string(i) + "/layer.tar";
    ASSERT_TRUE(MakeDirs(save + "/" + std::to_string(i)).ok());
    ASSERT_TRUE(WriteFileAtomic(save + "/" + member, built->layers[i].blob).ok());
    layers.push_back(member);
  }
  const std::string config = built->config_digest.Hex() + ".json";
  ASSERT_TRUE(WriteFileAtomic(save + "/" + config, built->config).ok());
  const nlohmann::json manifest = nlohmann::json::array(
      {{{"Config", config}, {"RepoTags", {"foundation:latest"}}, {"Layers", layers}}});
  ASSERT_TRUE(WriteFileAtomic(save + "/manifest.json", manifest.dump()).ok());
  const std::string docker_tar = dir_ + "/foundation-docker.tar";
  tar = RunCommand({"tar", "-C", save, "-cf", docker_tar, "."});
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
  int files_checked = 0;
  for (const auto& [path, want] : *expected) {
    if (want.type != 'f') continue;
    SCOPED_TRACE(path);
    CommandResult cat = Lazyfs({"cat", "docker-archive:" + docker_tar, path});
    ASSERT_EQ(cat.exit_code, 0) << cat.err;
    EXPECT_EQ(Sha256Of(cat.out).Hex(), want.sha256);
    if (++files_checked == 4) break;
  }
  EXPECT_EQ(files_checked, 4);
  CommandResult named = Lazyfs({"cat", "docker-archive:" + docker_tar + ":foundation:latest",
                                "/etc/passwd"});
  EXPECT_EQ(named.exit_code, 0) << named.err;
  EXPECT_EQ(Sha256Of(named.out).Hex(), expected->at("/etc/passwd").sha256);
  CommandResult wrong = Lazyfs({"ls", "docker-archive:" + docker_tar + ":other:1", "/"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("no image tagged \"other:1\""), std::string::npos) << wrong.err;
}

}  // namespace
}  // namespace lazyfs::testing
