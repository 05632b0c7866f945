#include "tests/support/image_builder.h"

#include <sys/mman.h>

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "base/fd.h"

namespace lazyfs::testing {
namespace {

using Json = nlohmann::json;

constexpr char kOciManifestType[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kOciIndexType[] = "application/vnd.oci.image.index.v1+json";
constexpr char kOciConfigType[] = "application/vnd.oci.image.config.v1+json";
constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";
constexpr char kCreated[] = "2023-11-14T22:13:20Z";  // kDefaultMtime
constexpr char kOpaqueName[] = ".wh..wh..opq";
constexpr char kWhiteoutPrefix[] = ".wh.";
constexpr char kAufsMetaPrefix[] = ".wh..wh.";

// ----- RAII for C handles -------------------------------------------------------------------

struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
using ArchiveWriter = std::unique_ptr<archive, ArchiveWriteFree>;
struct ArchiveEntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ArchiveEntry = std::unique_ptr<archive_entry, ArchiveEntryFree>;

class ZDeflate {
 public:
  ZDeflate() = default;
  ~ZDeflate() {
    if (live_) deflateEnd(&z_);
  }
  ZDeflate(const ZDeflate&) = delete;
  ZDeflate& operator=(const ZDeflate&) = delete;
  int Init(int level) {
    int rc = deflateInit2(&z_, level, Z_DEFLATED, 31 /* gzip wrapper */, 8, Z_DEFAULT_STRATEGY);
    live_ = rc == Z_OK;
    return rc;
  }
  z_stream* get() { return &z_; }

 private:
  z_stream z_{};
  bool live_ = false;
};

class ZInflate {
 public:
  ZInflate() = default;
  ~ZInflate() {
    if (live_) inflateEnd(&z_);
  }
  ZInflate(const ZInflate&) = delete;
  ZInflate& operator=(const ZInflate&) = delete;
  int Init() {
    int rc = inflateInit2(&z_, 31 /* gzip only */);
    live_ = rc == Z_OK;
    return rc;
  }
  z_stream* get() { return &z_; }

 private:
  z_stream z_{};
  bool live_ = false;
};

struct ZstdCCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct ZstdDCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

// ----- Tar names ------------------------------------------------------------------------------

std::string JoinDir(const std::string& dir, const std::string& name) {
  std::string d = dir;
  while (!d.empty() && d.back() == '/') d.pop_back();
  if (d.empty() || d == ".") return name;
  return d + "/" + name;
}

// The name the builder writes into the tar header for `e`.
std::string TarName(const Entry& e) {
  if (e.raw_name) return e.path;
  switch (e.type) {
    case EntryType::kWhiteout: {
      std::string p = e.path;
      while (!p.empty() && p.back() == '/') p.pop_back();
      size_t slash = p.rfind('/');
      if (slash == std::string::npos) return kWhiteoutPrefix + p;
      return p.substr(0, slash + 1) + kWhiteoutPrefix + p.substr(slash + 1);
    }
    case EntryType::kOpaque:
      return JoinDir(e.path, kOpaqueName);
    case EntryType::kDir:
      if (e.path.empty() || e.path == "." || e.path == "./") return "./";
      return e.path.back() == '/' ? e.path : e.path + "/";
    default:
      return e.path;
  }
}

uint32_t PermOf(const Entry& e) {
  if (e.mode != 0) return e.mode & 07777;
  switch (e.type) {
    case EntryType::kDir:
      return 0755;
    case EntryType::kSymlink:
      return 0777;
    default:
      return 0644;
  }
}

// What the tar header carries as content for `e` (whiteout markers are empty files).
std::string_view DataOf(const Entry& e) {
  switch (e.type) {
    case EntryType::kFile:
      return e.data;
    case EntryType::kWhiteout:
    case EntryType::kOpaque:
      return e.raw_name ? std::string_view(e.data) : std::string_view();
    default:
      return {};
  }
}

std::string ArchiveError(archive* a, std::string_view what) {
  const char* msg = archive_error_string(a);
  return std::string(what) + ": " + (msg ? msg : "unknown libarchive error");
}

la_ssize_t AppendToString(archive*, void* client, const void* buf, size_t len) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buf), len);
  return static_cast<la_ssize_t>(len);
}

// A sparse file: libarchive's pax writer takes the whole content and skips the holes
// without reading them, so holes are handed over as views of untouched anonymous memory.
Status WriteSparseEntry(archive* a, archive_entry* x, const Entry& e, const std::string& name) {
  archive_entry_set_size(x, static_cast<la_int64_t>(e.sparse_size));
  for (const auto& [offset, bytes] : e.sparse_data) {
    archive_entry_sparse_add_entry(x, static_cast<la_int64_t>(offset),
                                   static_cast<la_int64_t>(bytes.size()));
  }
  if (archive_write_header(a, x) < ARCHIVE_WARN) {
    return InvalidArgumentError(ArchiveError(a, "writing tar header for \"" + name + "\""));
  }
  static constexpr size_t kHoleView = size_t{1} << 30;
  static const char* zeros = static_cast<const char*>(
      ::mmap(nullptr, kHoleView, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (zeros == MAP_FAILED) return InternalError("mmap failed");
  auto write = [&](const char* p, uint64_t len) -> Status {
    while (len > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(len, kHoleView));
      la_ssize_t w = archive_write_data(a, p, n);
      if (w <= 0) return InternalError(ArchiveError(a, "writing data of \"" + name + "\""));
      len -= static_cast<uint64_t>(w);
      if (p != zeros) p += w;
    }
    return Status::Ok();
  };
  uint64_t at = 0;
  for (const auto& [offset, bytes] : e.sparse_data) {
    LAZYFS_RETURN_IF_ERROR(write(zeros, offset - at));
    LAZYFS_RETURN_IF_ERROR(write(bytes.data(), bytes.size()));
    at = offset + bytes.size();
  }
  LAZYFS_RETURN_IF_ERROR(write(zeros, e.sparse_size - at));
  if (archive_write_finish_entry(a) < ARCHIVE_WARN) {
    return InternalError(ArchiveError(a, "finishing \"" + name + "\""));
  }
  return Status::Ok();
}

Status WriteOneEntry(archive* a, const Entry& e, TarFormat format) {
  std::string name = TarName(e);
  if (!e.xattrs.empty() && format != TarFormat::kPax &&
      format != TarFormat::kPaxLibarchiveXattrs) {
    return InvalidArgumentError("entry \"" + name + "\": xattrs need TarFormat::kPax");
  }
  ArchiveEntry ae(archive_entry_new());
  if (!ae) return InternalError("archive_entry_new failed");
  archive_entry* x = ae.get();
  archive_entry_set_pathname(x, name.c_str());
  archive_entry_set_perm(x, PermOf(e));
  archive_entry_set_uid(x, e.uid);
  archive_entry_set_gid(x, e.gid);
  archive_entry_set_mtime(x, e.mtime, 0);
  archive_entry_set_size(x, 0);
  std::string_view data = DataOf(e);
  switch (e.type) {
    case EntryType::kFile:
    case EntryType::kWhiteout:
    case EntryType::kOpaque:
      archive_entry_set_filetype(x, AE_IFREG);
      archive_entry_set_size(x, static_cast<la_int64_t>(data.size()));
      break;
    case EntryType::kDir:
      archive_entry_set_filetype(x, AE_IFDIR);
      break;
    case EntryType::kSymlink:
      if (e.target.empty()) {
        return InvalidArgumentError("symlink \"" + name + "\" has no target");
      }
      archive_entry_set_filetype(x, AE_IFLNK);
      archive_entry_set_symlink(x, e.target.c_str());
      break;
    case EntryType::kHardlink:
      if (e.target.empty()) {
        return InvalidArgumentError("hardlink \"" + name + "\" has no target");
      }
      archive_entry_set_filetype(x, AE_IFREG);
      archive_entry_set_hardlink(x, e.target.c_str());
      break;
    case EntryType::kCharDev:
    case EntryType::kBlockDev:
      archive_entry_set_filetype(x, e.type == EntryType::kCharDev ? AE_IFCHR : AE_IFBLK);
      archive_entry_set_rdevmajor(x, e.major);
      archive_entry_set_rdevminor(x, e.minor);
      break;
    case EntryType::kFifo:
      archive_entry_set_filetype(x, AE_IFIFO);
      break;
  }
  for (const auto& [k, v] : e.xattrs) {
    archive_entry_xattr_add_entry(x, k.c_str(), v.data(), v.size());
  }
  if (e.sparse_size > 0) return WriteSparseEntry(a, x, e, name);
  if (archive_write_header(a, x) < ARCHIVE_WARN) {
    return InvalidArgumentError(ArchiveError(a, "writing tar header for \"" + name + "\""));
  }
  size_t off = 0;
  while (off < data.size()) {
    la_ssize_t n = archive_write_data(a, data.data() + off, data.size() - off);
    if (n <= 0) return InternalError(ArchiveError(a, "writing data of \"" + name + "\""));
    off += static_cast<size_t>(n);
  }
  if (archive_write_finish_entry(a) < ARCHIVE_WARN) {
    return InternalError(ArchiveError(a, "finishing \"" + name + "\""));
  }
  return Status::Ok();
}

// ----- Streaming decompression --------------------------------------------------------------

using Sink = std::function<Status(std::string_view)>;

Status InflateGzip(std::string_view in, const Sink& sink) {
  if (in.empty()) return DataLossError("gzip: empty input");
  ZInflate inf;
  if (inf.Init() != Z_OK) return InternalError("gzip: inflateInit2 failed");
  z_stream* z = inf.get();
  if (in.size() > UINT32_MAX) return ResourceExhaustedError("gzip: input over 4 GiB");
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z->avail_in = static_cast<uInt>(in.size());
  std::string buf(1 << 16, '\0');
  for (;;) {
    z->next_out = reinterpret_cast<Bytef*>(buf.data());
    z->avail_out = static_cast<uInt>(buf.size());
    int rc = inflate(z, Z_NO_FLUSH);
    size_t produced = buf.size() - z->avail_out;
    if (produced > 0) LAZYFS_RETURN_IF_ERROR(sink(std::string_view(buf.data(), produced)));
    if (rc == Z_STREAM_END) {
      if (z->avail_in == 0) return Status::Ok();
      if (inflateReset(z) != Z_OK) return InternalError("gzip: inflateReset failed");
      continue;  // next gzip member
    }
    if (rc == Z_BUF_ERROR || (rc == Z_OK && produced == 0 && z->avail_in == 0)) {
      return DataLossError("gzip: truncated stream");
    }
    if (rc != Z_OK) {
      return DataLossError(std::string("gzip: ") + (z->msg ? z->msg : "corrupt stream"));
    }
  }
}

Status DecompressZstd(std::string_view in, const Sink& sink) {
  if (in.empty()) return DataLossError("zstd: empty input");
  std::unique_ptr<ZSTD_DCtx, ZstdDCtxFree> d(ZSTD_createDCtx());
  if (!d) return InternalError("zstd: ZSTD_createDCtx failed");
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  size_t last = 0;
  while (ib.pos < ib.size) {
    ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
    last = ZSTD_decompressStream(d.get(), &ob, &ib);
    if (ZSTD_isError(last)) return DataLossError(std::string("zstd: ") + ZSTD_getErrorName(last));
    if (ob.pos > 0) LAZYFS_RETURN_IF_ERROR(sink(std::string_view(buf.data(), ob.pos)));
  }
  // Drain what the decoder still holds for the last frame.
  while (last != 0) {
    ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
    last = ZSTD_decompressStream(d.get(), &ob, &ib);
    if (ZSTD_isError(last)) return DataLossError(std::string("zstd: ") + ZSTD_getErrorName(last));
    if (ob.pos == 0) break;
    LAZYFS_RETURN_IF_ERROR(sink(std::string_view(buf.data(), ob.pos)));
  }
  if (last != 0) return DataLossError("zstd: truncated frame");
  return Status::Ok();
}

Status DecompressStream(std::string_view blob, Compression c, const Sink& sink) {
  switch (c) {
    case Compression::kNone:
      return sink(blob);
    case Compression::kGzip:
      return InflateGzip(blob, sink);
    case Compression::kZstd:
      return DecompressZstd(blob, sink);
  }
  return InvalidArgumentError("unknown compression");
}

// ----- Layout helpers -------------------------------------------------------------------------

Json Descriptor(std::string_view media_type, const Digest& d, size_t size) {
  return Json{{"mediaType", media_type}, {"digest", d.ToString()}, {"size", size}};
}

Status WriteBlob(const std::string& layout_dir, std::string_view data, const Digest& d) {
  std::string path = layout_dir + "/blobs/sha256/" + d.Hex();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && static_cast<size_t>(st.st_size) == data.size()) {
    return Status::Ok();  // content-addressed: same name, same bytes
  }
  return WriteFileAtomic(path, data, 0644).WithContext("writing blob " + d.Short());
}

Status PrepareLayout(const std::string& layout_dir) {
  LAZYFS_RETURN_IF_ERROR(MakeDirs(layout_dir + "/blobs/sha256"));
  return WriteFileAtomic(layout_dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
}

// Points `tag` in layout_dir/index.json at `descriptor`, keeping other tags.
Status TagInIndexJson(const std::string& layout_dir, Json descriptor, const std::string& tag) {
  std::string path = layout_dir + "/index.json";
  Json index = {{"schemaVersion", 2}, {"mediaType", kOciIndexType}, {"manifests", Json::array()}};
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    LAZYFS_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    Json old = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (old.is_discarded() || !old.is_object()) {
      return InvalidArgumentError(path + ": not a JSON object");
    }
    index = std::move(old);
    if (!index.contains("manifests") || !index["manifests"].is_array()) {
      index["manifests"] = Json::array();
    }
  }
  Json kept = Json::array();
  for (const Json& m : index["manifests"]) {
    bool same_tag = m.is_object() && m.contains("annotations") && m["annotations"].is_object() &&
                    m["annotations"].value(kRefNameAnnotation, Json()) == Json(tag);
    if (!same_tag) kept.push_back(m);
  }
  descriptor["annotations"] = Json{{kRefNameAnnotation, tag}};
  kept.push_back(std::move(descriptor));
  index["manifests"] = std::move(kept);
  return WriteFileAtomic(path, index.dump());
}

Status WriteImageBlobs(const BuiltImage& img, const std::string& layout_dir) {
  for (const BuiltLayer& l : img.layers) {
    LAZYFS_RETURN_IF_ERROR(WriteBlob(layout_dir, l.blob, l.digest));
  }
  LAZYFS_RETURN_IF_ERROR(WriteBlob(layout_dir, img.config, img.config_digest));
  return WriteBlob(layout_dir, img.manifest, img.manifest_digest);
}

// ----- The oracle -----------------------------------------------------------------------------

struct Node {
  char type = 'd';
  uint32_t mode = 0755, uid = 0, gid = 0;
  std::string content;  // file data or symlink target
  uint32_t major = 0, minor = 0;
  int64_t mtime = 0;
  std::map<std::string, std::string> xattrs;
};
using NodePtr = std::shared_ptr<Node>;
// Absolute path ("/", "/etc/passwd") -> node. Hardlinked names share a node.
using Tree = std::map<std::string, NodePtr>;

NodePtr ImplicitDir() { return std::make_shared<Node>(); }

// Tar name -> absolute path in the image, or InvalidArgument for names the product must reject.
// A leading "/" is relative to the image root, as container tools take it.
Result<std::string> CanonicalPath(const std::string& name) {
  std::string_view p = name;
  while (p.starts_with("/") || p.starts_with("./")) p.remove_prefix(p.front() == '/' ? 1 : 2);
  while (!p.empty() && p.back() == '/') p.remove_suffix(1);
  if (p.empty() || p == ".") return std::string("/");
  std::string out;
  size_t start = 0;
  while (start <= p.size()) {
    size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    std::string_view comp = p.substr(start, slash - start);
    if (comp.empty() || comp == "." || comp == "..") {
      return InvalidArgumentError("non-canonical name \"" + name + "\"");
    }
    out += '/';
    out += comp;
    start = slash + 1;
  }
  return out;
}

std::string ParentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

// Removes everything strictly below `dir`.
void EraseChildren(Tree& t, const std::string& dir) {
  std::string prefix = dir == "/" ? "/" : dir + "/";
  auto it = t.lower_bound(prefix);
  while (it != t.end() && it->first.starts_with(prefix)) {
    if (it->first == "/") {
      ++it;
      continue;
    }
    it = t.erase(it);
  }
}

void EraseSubtree(Tree& t, const std::string& path) {
  EraseChildren(t, path);
  if (path != "/") t.erase(path);
}

// Makes `dir` and its ancestors directories: missing ones implicit, non-directories replaced.
void EnsureDir(Tree& t, const std::string& dir) {
  if (dir != "/") EnsureDir(t, ParentOf(dir));
  auto it = t.find(dir);
  if (it == t.end()) {
    t[dir] = ImplicitDir();
  } else if (it->second->type != 'd') {
    it->second = ImplicitDir();  // a non-directory has nothing below it
  }
}

NodePtr NodeOf(const Entry& e) {
  auto n = std::make_shared<Node>();
  n->mode = PermOf(e);
  n->uid = e.uid;
  n->gid = e.gid;
  n->mtime = e.mtime;
  n->xattrs = e.xattrs;
  switch (e.type) {
    case EntryType::kFile:
    case EntryType::kWhiteout:
    case EntryType::kOpaque:
    case EntryType::kHardlink:
      n->type = 'f';
      n->content = std::string(DataOf(e));
      break;
    case EntryType::kDir:
      n->type = 'd';
      break;
    case EntryType::kSymlink:
      n->type = 'l';
      n->content = e.target;
      break;
    case EntryType::kCharDev:
    case EntryType::kBlockDev:
      n->type = e.type == EntryType::kCharDev ? 'c' : 'b';
      n->major = e.major;
      n->minor = e.minor;
      break;
    case EntryType::kFifo:
      n->type = 'p';
      break;
  }
  return n;
}

enum class Role { kNormal, kWhiteout, kOpaque, kIgnored };

struct Classified {
  Role role = Role::kNormal;
  std::string path;  // the entry's path; for whiteouts the deleted path; for opaque the dir
};

Result<Classified> Classify(const Entry& e) {
  std::string name = TarName(e);
  LAZYFS_ASSIGN_OR_RETURN(std::string path, CanonicalPath(name));
  if (path == "/") return Classified{Role::kNormal, path};
  std::string base = path.substr(path.rfind('/') + 1);
  std::string parent = ParentOf(path);
  if (base == kOpaqueName) return Classified{Role::kOpaque, parent};
  if (base.starts_with(kAufsMetaPrefix)) return Classified{Role::kIgnored, path};
  if (base.starts_with(kWhiteoutPrefix)) {
    std::string victim = base.substr(sizeof(kWhiteoutPrefix) - 1);
    if (victim.empty() || victim == "." || victim == "..") {
      return InvalidArgumentError("bad whiteout name \"" + name + "\"");
    }
    return Classified{Role::kWhiteout, parent == "/" ? "/" + victim : parent + "/" + victim};
  }
  return Classified{Role::kNormal, path};
}

Status ApplyLayer(Tree& t, const Layer& layer) {
  std::vector<Classified> roles;
  roles.reserve(layer.entries.size());
  for (const Entry& e : layer.entries) {
    LAZYFS_ASSIGN_OR_RETURN(Classified c, Classify(e));
    roles.push_back(std::move(c));
  }
  // Whiteouts and opaque markers act on the lower layers only, whatever their tar position.
  for (const Classified& c : roles) {
    if (c.role == Role::kWhiteout) {
      EraseSubtree(t, c.path);
      EnsureDir(t, ParentOf(c.path));
    } else if (c.role == Role::kOpaque) {
      EnsureDir(t, c.path);
      EraseChildren(t, c.path);
    }
  }
  std::set<std::string> put_here;  // paths this layer put a non-directory at
  for (size_t i = 0; i < layer.entries.size(); ++i) {
    const Entry& e = layer.entries[i];
    const Classified& c = roles[i];
    if (c.role != Role::kNormal) continue;
    const std::string& path = c.path;
    for (std::string up = path; up != "/";) {
      up = ParentOf(up);
      if (put_here.contains(up)) {
        return InvalidArgumentError("\"" + path + "\" is below a non-directory of its layer");
      }
    }
    if (path != "/") EnsureDir(t, ParentOf(path));
    NodePtr node;
    if (e.type == EntryType::kHardlink) {
      LAZYFS_ASSIGN_OR_RETURN(std::string target, CanonicalPath(e.target));
      auto it = t.find(target);
      if (it == t.end()) {
        return InvalidArgumentError("hardlink \"" + path + "\": target \"" + target +
                                    "\" does not exist");
      }
      if (it->second->type == 'd') {
        return InvalidArgumentError("hardlink \"" + path + "\": target \"" + target +
                                    "\" is a directory");
      }
      node = it->second;
    } else {
      node = NodeOf(e);
    }
    if (path == "/" && node->type != 'd') {
      return InvalidArgumentError("a non-directory entry names the root");
    }
    auto existing = t.find(path);
    if (existing != t.end() && existing->second->type == 'd' && node->type != 'd') {
      EraseSubtree(t, path);
    }
    if (node->type == 'd') {
      put_here.erase(path);
    } else {
      put_here.insert(path);
    }
    t[path] = std::move(node);
  }
  return Status::Ok();
}

// ----- JSON spec parsing --------------------------------------------------------------------

Status CheckKeys(const Json& obj, const std::string& where, const std::set<std::string>& allowed) {
  for (const auto& [k, v] : obj.items()) {
    if (!allowed.contains(k)) return InvalidArgumentError(where + ": unknown key \"" + k + "\"");
  }
  return Status::Ok();
}

Result<std::string> GetString(const Json& obj, const std::string& where, const char* key) {
  const Json& v = obj[key];
  if (!v.is_string()) return InvalidArgumentError(where + ": \"" + key + "\" must be a string");
  return v.get<std::string>();
}

Result<uint64_t> GetUnsigned(const Json& obj, const std::string& where, const char* key,
                             uint64_t max) {
  const Json& v = obj[key];
  if (!v.is_number_integer() ||
      (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0)) {
    return InvalidArgumentError(where + ": \"" + key + "\" must be a non-negative integer");
  }
  uint64_t x = v.get<uint64_t>();
  if (x > max) return InvalidArgumentError(where + ": \"" + key + "\" is out of range");
  return x;
}

Result<uint32_t> ParseMode(const Json& v, const std::string& where) {
  if (v.is_number_unsigned()) {
    uint64_t m = v.get<uint64_t>();
    if (m > 07777) return InvalidArgumentError(where + ": \"mode\" must be at most 07777");
    return static_cast<uint32_t>(m);
  }
  if (!v.is_string()) {
    return InvalidArgumentError(where + ": \"mode\" must be an octal string like \"0755\"");
  }
  std::string s = v.get<std::string>();
  if (s.empty() || s.size() > 6 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '7'; })) {
    return InvalidArgumentError(where + ": \"mode\" \"" + s + "\" is not an octal mode");
  }
  uint32_t m = static_cast<uint32_t>(std::stoul(s, nullptr, 8));
  if (m > 07777) return InvalidArgumentError(where + ": \"mode\" \"" + s + "\" is over 07777");
  return m;
}

Result<EntryType> ParseEntryType(const std::string& s, const std::string& where) {
  static const std::map<std::string, EntryType> kTypes = {
      {"file", EntryType::kFile},       {"dir", EntryType::kDir},
      {"symlink", EntryType::kSymlink}, {"hardlink", EntryType::kHardlink},
      {"chardev", EntryType::kCharDev}, {"blockdev", EntryType::kBlockDev},
      {"fifo", EntryType::kFifo},       {"whiteout", EntryType::kWhiteout},
      {"opaque", EntryType::kOpaque}};
  auto it = kTypes.find(s);
  if (it == kTypes.end()) return InvalidArgumentError(where + ": unknown type \"" + s + "\"");
  return it->second;
}

Result<Entry> ParseEntry(const Json& j, const std::string& where, const std::string& base_dir) {
  if (!j.is_object()) return InvalidArgumentError(where + ": must be an object");
  LAZYFS_RETURN_IF_ERROR(CheckKeys(j, where,
                                   {"type", "path", "data", "from", "mode", "uid", "gid", "mtime",
                                    "major", "minor", "target", "xattrs", "raw"}));
  if (!j.contains("type")) return InvalidArgumentError(where + ": missing \"type\"");
  if (!j.contains("path")) return InvalidArgumentError(where + ": missing \"path\"");
  Entry e;
  LAZYFS_ASSIGN_OR_RETURN(std::string type, GetString(j, where, "type"));
  LAZYFS_ASSIGN_OR_RETURN(e.type, ParseEntryType(type, where));
  LAZYFS_ASSIGN_OR_RETURN(e.path, GetString(j, where, "path"));
  if (j.contains("data") && j.contains("from")) {
    return InvalidArgumentError(where + ": give \"data\" or \"from\", not both");
  }
  if ((j.contains("data") || j.contains("from")) && e.type != EntryType::kFile) {
    return InvalidArgumentError(where + ": only files have \"data\"/\"from\"");
  }
  if (j.contains("data")) {
    LAZYFS_ASSIGN_OR_RETURN(e.data, GetString(j, where, "data"));
  }
  if (j.contains("from")) {
    LAZYFS_ASSIGN_OR_RETURN(std::string from, GetString(j, where, "from"));
    if (!from.starts_with("/")) from = base_dir + "/" + from;
    auto content = ReadFileToString(from, size_t{1} << 32);
    if (!content.ok()) {
      return InvalidArgumentError(where + ": \"from\": " + content.status().ToString());
    }
    e.data = std::move(*content);
  }
  if (j.contains("mode")) {
    LAZYFS_ASSIGN_OR_RETURN(e.mode, ParseMode(j["mode"], where));
  }
  if (j.contains("uid")) {
    LAZYFS_ASSIGN_OR_RETURN(uint64_t v, GetUnsigned(j, where, "uid", UINT32_MAX));
    e.uid = static_cast<uint32_t>(v);
  }
  if (j.contains("gid")) {
    LAZYFS_ASSIGN_OR_RETURN(uint64_t v, GetUnsigned(j, where, "gid", UINT32_MAX));
    e.gid = static_cast<uint32_t>(v);
  }
  if (j.contains("mtime")) {
    const Json& v = j["mtime"];
    if (!v.is_number_integer())
      return InvalidArgumentError(where + ": \"mtime\" must be an integer");
    e.mtime = v.get<int64_t>();
  }
  if (j.contains("major")) {
    LAZYFS_ASSIGN_OR_RETURN(uint64_t v, GetUnsigned(j, where, "major", UINT32_MAX));
    e.major = static_cast<uint32_t>(v);
  }
  if (j.contains("minor")) {
    LAZYFS_ASSIGN_OR_RETURN(uint64_t v, GetUnsigned(j, where, "minor", UINT32_MAX));
    e.minor = static_cast<uint32_t>(v);
  }
  if (j.contains("target")) {
    LAZYFS_ASSIGN_OR_RETURN(e.target, GetString(j, where, "target"));
  }
  if ((e.type == EntryType::kSymlink || e.type == EntryType::kHardlink) && e.target.empty()) {
    return InvalidArgumentError(where + ": " + type + " needs a \"target\"");
  }
  if (j.contains("xattrs")) {
    const Json& x = j["xattrs"];
    if (!x.is_object()) return InvalidArgumentError(where + ": \"xattrs\" must be an object");
    for (const auto& [k, v] : x.items()) {
      if (!v.is_string()) {
        return InvalidArgumentError(where + ": xattr \"" + k + "\" must be a string");
      }
      e.xattrs[k] = v.get<std::string>();
    }
  }
  if (j.contains("raw")) {
    if (!j["raw"].is_boolean()) return InvalidArgumentError(where + ": \"raw\" must be a boolean");
    e.raw_name = j["raw"].get<bool>();
  }
  return e;
}

Result<Layer> ParseLayer(const Json& j, const std::string& where, const std::string& base_dir) {
  if (!j.is_object()) return InvalidArgumentError(where + ": must be an object");
  LAZYFS_RETURN_IF_ERROR(CheckKeys(j, where, {"compression", "format", "entries"}));
  Layer layer;
  if (j.contains("compression")) {
    LAZYFS_ASSIGN_OR_RETURN(std::string c, GetString(j, where, "compression"));
    if (c == "gzip") {
      layer.compression = Compression::kGzip;
    } else if (c == "zstd") {
      layer.compression = Compression::kZstd;
    } else if (c == "none") {
      layer.compression = Compression::kNone;
    } else {
      return InvalidArgumentError(where + ": unknown compression \"" + c + "\"");
    }
  }
  if (j.contains("format")) {
    LAZYFS_ASSIGN_OR_RETURN(std::string f, GetString(j, where, "format"));
    if (f == "pax") {
      layer.format = TarFormat::kPax;
    } else if (f == "gnu") {
      layer.format = TarFormat::kGnu;
    } else if (f == "ustar") {
      layer.format = TarFormat::kUstar;
    } else {
      return InvalidArgumentError(where + ": unknown format \"" + f + "\"");
    }
  }
  if (!j.contains("entries") || !j["entries"].is_array()) {
    return InvalidArgumentError(where + ": \"entries\" must be an array");
  }
  size_t i = 0;
  for (const Json& ej : j["entries"]) {
    LAZYFS_ASSIGN_OR_RETURN(
        Entry e, ParseEntry(ej, where + ".entries[" + std::to_string(i++) + "]", base_dir));
    layer.entries.push_back(std::move(e));
  }
  return layer;
}

Result<ImageSpec> ParseSpecObject(const Json& j, const std::string& base_dir) {
  if (!j.is_object()) return InvalidArgumentError("spec: must be a JSON object");
  LAZYFS_RETURN_IF_ERROR(
      CheckKeys(j, "spec", {"layers", "os", "architecture", "variant", "labels"}));
  ImageSpec spec;
  if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty()) {
    return InvalidArgumentError("spec: \"layers\" must be a non-empty array");
  }
  size_t i = 0;
  for (const Json& lj : j["layers"]) {
    LAZYFS_ASSIGN_OR_RETURN(Layer l,
                            ParseLayer(lj, "layers[" + std::to_string(i++) + "]", base_dir));
    spec.layers.push_back(std::move(l));
  }
  if (j.contains("os")) {
    LAZYFS_ASSIGN_OR_RETURN(spec.os, GetString(j, "spec", "os"));
  }
  if (j.contains("architecture")) {
    LAZYFS_ASSIGN_OR_RETURN(spec.architecture, GetString(j, "spec", "architecture"));
  }
  if (j.contains("variant")) {
    LAZYFS_ASSIGN_OR_RETURN(spec.variant, GetString(j, "spec", "variant"));
  }
  if (j.contains("labels")) {
    const Json& l = j["labels"];
    if (!l.is_object()) return InvalidArgumentError("spec: \"labels\" must be an object");
    for (const auto& [k, v] : l.items()) {
      if (!v.is_string()) return InvalidArgumentError("spec: label \"" + k + "\" must be a string");
      spec.config_labels[k] = v.get<std::string>();
    }
  }
  return spec;
}

}  // namespace

// ----- Entries --------------------------------------------------------------------------------

Entry File(std::string path, std::string data, uint32_t mode, uint32_t uid, uint32_t gid) {
  Entry e;
  e.type = EntryType::kFile;
  e.path = std::move(path);
  e.data = std::move(data);
  e.mode = mode;
  e.uid = uid;
  e.gid = gid;
  return e;
}

Entry SparseFile(std::string path, uint64_t size, std::map<uint64_t, std::string> data,
                 uint32_t mode) {
  Entry e = File(std::move(path), "", mode);
  e.sparse_size = size;
  e.sparse_data = std::move(data);
  return e;
}

Entry Dir(std::string path, uint32_t mode, uint32_t uid, uint32_t gid) {
  Entry e;
  e.type = EntryType::kDir;
  e.path = std::move(path);
  e.mode = mode;
  e.uid = uid;
  e.gid = gid;
  return e;
}

Entry Symlink(std::string path, std::string target, uint32_t uid, uint32_t gid) {
  Entry e;
  e.type = EntryType::kSymlink;
  e.path = std::move(path);
  e.target = std::move(target);
  e.uid = uid;
  e.gid = gid;
  return e;
}

Entry Hardlink(std::string path, std::string target) {
  Entry e;
  e.type = EntryType::kHardlink;
  e.path = std::move(path);
  e.target = std::move(target);
  return e;
}

Entry CharDev(std::string path, uint32_t major, uint32_t minor, uint32_t mode) {
  Entry e;
  e.type = EntryType::kCharDev;
  e.path = std::move(path);
  e.major = major;
  e.minor = minor;
  e.mode = mode;
  return e;
}

Entry BlockDev(std::string path, uint32_t major, uint32_t minor, uint32_t mode) {
  Entry e = CharDev(std::move(path), major, minor, mode);
  e.type = EntryType::kBlockDev;
  return e;
}

Entry Fifo(std::string path, uint32_t mode) {
  Entry e;
  e.type = EntryType::kFifo;
  e.path = std::move(path);
  e.mode = mode;
  return e;
}

Entry Whiteout(std::string path) {
  Entry e;
  e.type = EntryType::kWhiteout;
  e.path = std::move(path);
  return e;
}

Entry Opaque(std::string dir) {
  Entry e;
  e.type = EntryType::kOpaque;
  e.path = std::move(dir);
  return e;
}

Entry Raw(std::string exact_tar_name, EntryType type, std::string data, std::string target) {
  Entry e;
  e.type = type;
  e.path = std::move(exact_tar_name);
  e.data = std::move(data);
  e.target = std::move(target);
  e.raw_name = true;
  return e;
}

// ----- Tars and compression -------------------------------------------------------------------

Result<std::string> BuildLayerTar(const std::vector<Entry>& entries, TarFormat format) {
  // Declared before the writer: freeing a writer that was not closed (an early error return)
  // flushes into `out`, which must still exist then.
  std::string out;
  ArchiveWriter a(archive_write_new());
  if (!a) return InternalError("archive_write_new failed");
  int rc = ARCHIVE_OK;
  switch (format) {
    case TarFormat::kPax:
    case TarFormat::kPaxLibarchiveXattrs:
      // Restricted pax: extended headers only where needed, as Go's archive/tar (docker) does.
      rc = archive_write_set_format_pax_restricted(a.get());
      if (rc == ARCHIVE_OK) {
        // One spelling of xattrs only: SCHILY.xattr.* (docker, containerd) by default.
        rc = archive_write_set_format_option(
            a.get(), "pax", "xattrheader",
            format == TarFormat::kPax ? "SCHILY" : "LIBARCHIVE");
      }
      break;
    case TarFormat::kGnu:
      rc = archive_write_set_format_gnutar(a.get());
      break;
    case TarFormat::kUstar:
      rc = archive_write_set_format_ustar(a.get());
      break;
  }
  if (rc != ARCHIVE_OK) return InternalError(ArchiveError(a.get(), "setting the tar format"));
  // No blocking: the tar ends right after its two zero blocks, like Go's archive/tar.
  archive_write_set_bytes_per_block(a.get(), 0);
  if (archive_write_open2(a.get(), &out, nullptr, AppendToString, nullptr, nullptr) != ARCHIVE_OK) {
    return InternalError(ArchiveError(a.get(), "opening the tar writer"));
  }
  for (const Entry& e : entries) {
    LAZYFS_RETURN_IF_ERROR(WriteOneEntry(a.get(), e, format));
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    return InternalError(ArchiveError(a.get(), "closing the tar writer"));
  }
  return out;
}

Result<std::string> Compress(std::string_view tar, Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return std::string(tar);
    case Compression::kGzip: {
      ZDeflate def;
      if (def.Init(6) != Z_OK) return InternalError("gzip: deflateInit2 failed");
      z_stream* z = def.get();
      std::string out;
      std::string buf(1 << 16, '\0');
      size_t off = 0;
      int rc = Z_OK;
      while (rc != Z_STREAM_END) {
        size_t chunk = std::min<size_t>(tar.size() - off, 1u << 30);
        z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(tar.data() + off));
        z->avail_in = static_cast<uInt>(chunk);
        bool last = off + chunk == tar.size();
        do {
          z->next_out = reinterpret_cast<Bytef*>(buf.data());
          z->avail_out = static_cast<uInt>(buf.size());
          rc = deflate(z, last ? Z_FINISH : Z_NO_FLUSH);
          if (rc == Z_STREAM_ERROR) return InternalError("gzip: deflate failed");
          out.append(buf.data(), buf.size() - z->avail_out);
        } while (z->avail_out == 0);
        off += chunk;
        if (!last) continue;
        if (rc != Z_STREAM_END) return InternalError("gzip: deflate did not finish");
      }
      return out;
    }
    case Compression::kZstd: {
      std::unique_ptr<ZSTD_CCtx, ZstdCCtxFree> c(ZSTD_createCCtx());
      if (!c) return InternalError("zstd: ZSTD_createCCtx failed");
      std::string out(ZSTD_compressBound(tar.size()), '\0');
      size_t n = ZSTD_compressCCtx(c.get(), out.data(), out.size(), tar.data(), tar.size(), 3);
      if (ZSTD_isError(n)) return InternalError(std::string("zstd: ") + ZSTD_getErrorName(n));
      out.resize(n);
      return out;
    }
  }
  return InvalidArgumentError("unknown compression");
}

Result<std::string> Decompress(std::string_view blob, Compression compression,
                               uint64_t max_output) {
  std::string out;
  LAZYFS_RETURN_IF_ERROR(DecompressStream(blob, compression, [&](std::string_view piece) {
    if (out.size() + piece.size() > max_output) {
      return ResourceExhaustedError("decompressed data exceeds " + std::to_string(max_output) +
                                    " bytes");
    }
    out.append(piece);
    return Status::Ok();
  }));
  return out;
}

std::string LayerMediaType(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "application/vnd.oci.image.layer.v1.tar";
    case Compression::kGzip:
      return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Compression::kZstd:
      return "application/vnd.oci.image.layer.v1.tar+zstd";
  }
  return "application/vnd.oci.image.layer.v1.tar";
}

std::string HostArchitecture() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__arm__)
  return "arm";
#elif defined(__i386__)
  return "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return "ppc64le";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#else
  return "unknown";
#endif
}

// ----- Images ---------------------------------------------------------------------------------

Result<BuiltImage> BuildImage(const ImageSpec& spec) {
  BuiltImage img;
  Json diff_ids = Json::array();
  Json history = Json::array();
  Json layer_descs = Json::array();
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const Layer& layer = spec.layers[i];
    BuiltLayer b;
    if (layer.raw_blob) {
      b.blob = *layer.raw_blob;
      Sha256 h;
      Status s = DecompressStream(b.blob, layer.compression, [&](std::string_view piece) {
        h.Update(piece);
        return Status::Ok();
      });
      b.diff_id = s.ok() ? h.Finish() : Sha256Of(b.blob);
    } else {
      auto tar = BuildLayerTar(layer.entries, layer.format);
      if (!tar.ok()) return tar.status().WithContext("layer " + std::to_string(i));
      b.diff_id = Sha256Of(*tar);
      LAZYFS_ASSIGN_OR_RETURN(b.blob, Compress(*tar, layer.compression));
    }
    if (layer.diff_id) b.diff_id = *layer.diff_id;
    b.digest = Sha256Of(b.blob);
    b.media_type =
        layer.raw_media_type.empty() ? LayerMediaType(layer.compression) : layer.raw_media_type;
    Json d = Descriptor(b.media_type, b.digest, b.blob.size());
    if (!layer.annotations.empty()) d["annotations"] = layer.annotations;
    layer_descs.push_back(std::move(d));
    diff_ids.push_back(b.diff_id.ToString());
    history.push_back({{"created", kCreated},
                       {"created_by", "lazyfs image_builder: layer " + std::to_string(i)}});
    img.layers.push_back(std::move(b));
  }
  Json config = {{"architecture", spec.architecture},
                 {"os", spec.os},
                 {"created", kCreated},
                 {"config", Json::object()},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", std::move(diff_ids)}}},
                 {"history", std::move(history)}};
  if (!spec.variant.empty()) config["variant"] = spec.variant;
  if (!spec.config_labels.empty()) config["config"]["Labels"] = spec.config_labels;
  img.config = config.dump();
  img.config_digest = Sha256Of(img.config);
  Json manifest = {{"schemaVersion", 2},
                   {"mediaType", kOciManifestType},
                   {"config", Descriptor(kOciConfigType, img.config_digest, img.config.size())},
                   {"layers", std::move(layer_descs)}};
  img.manifest = manifest.dump();
  img.manifest_digest = Sha256Of(img.manifest);
  return img;
}

Result<Digest> WriteOciLayout(const ImageSpec& spec, const std::string& layout_dir,
                              const std::string& tag) {
  LAZYFS_ASSIGN_OR_RETURN(BuiltImage img, BuildImage(spec));
  LAZYFS_RETURN_IF_ERROR(PrepareLayout(layout_dir));
  LAZYFS_RETURN_IF_ERROR(WriteImageBlobs(img, layout_dir));
  LAZYFS_RETURN_IF_ERROR(TagInIndexJson(
      layout_dir, Descriptor(kOciManifestType, img.manifest_digest, img.manifest.size()), tag));
  return img.manifest_digest;
}

Result<Digest> WriteOciLayoutIndex(const std::vector<std::pair<ImageSpec, std::string>>& platforms,
                                   const std::string& layout_dir, const std::string& tag) {
  LAZYFS_RETURN_IF_ERROR(PrepareLayout(layout_dir));
  Json manifests = Json::array();
  for (const auto& [base_spec, platform] : platforms) {
    std::vector<std::string> parts;
    size_t start = 0;
    for (;;) {
      size_t slash = platform.find('/', start);
      parts.push_back(platform.substr(start, slash - start));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    if (parts.size() < 2 || parts.size() > 3 ||
        std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); })) {
      return InvalidArgumentError("platform \"" + platform + "\" is not os/arch[/variant]");
    }
    ImageSpec spec = base_spec;
    spec.os = parts[0];
    spec.architecture = parts[1];
    spec.variant = parts.size() == 3 ? parts[2] : "";
    auto img = BuildImage(spec);
    if (!img.ok()) return img.status().WithContext("platform " + platform);
    LAZYFS_RETURN_IF_ERROR(WriteImageBlobs(*img, layout_dir));
    Json d = Descriptor(kOciManifestType, img->manifest_digest, img->manifest.size());
    d["platform"] = {{"os", spec.os}, {"architecture", spec.architecture}};
    if (!spec.variant.empty()) d["platform"]["variant"] = spec.variant;
    manifests.push_back(std::move(d));
  }
  Json index = {{"schemaVersion", 2}, {"mediaType", kOciIndexType}, {"manifests", manifests}};
  std::string bytes = index.dump();
  Digest digest = Sha256Of(bytes);
  LAZYFS_RETURN_IF_ERROR(WriteBlob(layout_dir, bytes, digest));
  LAZYFS_RETURN_IF_ERROR(
      TagInIndexJson(layout_dir, Descriptor(kOciIndexType, digest, bytes.size()), tag));
  return digest;
}

// ----- The oracle -----------------------------------------------------------------------------

Result<Listing> ExpectedListing(const ImageSpec& spec) {
  Tree tree;
  tree["/"] = ImplicitDir();
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    if (spec.layers[i].raw_blob) {
      return UnimplementedError("layer " + std::to_string(i) +
                                " is a raw blob: no expected listing");
    }
    Status s = ApplyLayer(tree, spec.layers[i]);
    if (!s.ok()) return s.WithContext("layer " + std::to_string(i));
  }
  std::map<const Node*, uint32_t> names;
  std::map<std::string, uint32_t> subdirs;
  for (const auto& [path, node] : tree) {
    if (node->type != 'd') {
      ++names[node.get()];
    } else if (path != "/") {
      ++subdirs[ParentOf(path)];
    }
  }
  Listing out;
  for (const auto& [path, node] : tree) {
    ListingEntry e;
    e.type = node->type;
    e.mode = node->mode;
    e.uid = node->uid;
    e.gid = node->gid;
    e.mtime_sec = node->mtime;
    e.xattrs = node->xattrs;
    switch (node->type) {
      case 'd':
        e.nlink = 2 + subdirs[path];
        break;
      case 'f':
        e.size = node->content.size();
        e.sha256 = Sha256Of(node->content).Hex();
        break;
      case 'l':
        e.size = node->content.size();
        e.sha256 = Sha256Of(node->content).Hex();
        e.target = node->content;
        break;
      case 'c':
      case 'b':
        e.rdev_major = node->major;
        e.rdev_minor = node->minor;
        break;
      default:
        break;
    }
    if (node->type != 'd') e.nlink = names[node.get()];
    out[path] = std::move(e);
  }
  return out;
}

// ----- JSON specs -----------------------------------------------------------------------------

Result<ImageSpec> ParseImageSpecJson(std::string_view json, const std::string& base_dir) {
  // nlohmann reports parse and type errors as exceptions; none escape from here.
  try {
    Json j = Json::parse(json);
    return ParseSpecObject(j, base_dir);
  } catch (const Json::parse_error& ex) {
    return InvalidArgumentError(std::string("spec: invalid JSON: ") + ex.what());
  } catch (const std::exception& ex) {
    return InvalidArgumentError(std::string("spec: ") + ex.what());
  }
}

}  // namespace lazyfs::testing
