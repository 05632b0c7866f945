// Image references and platforms: parsing, normalisation and canonical text.
//
// The grammar follows the distribution project's reference grammar (the one docker, podman and
// skopeo share), so a name means the same image here as in those tools.
#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <regex>
#include <string>
#include <vector>

#include "fetch/fetch.h"

namespace lazyfs::fetch {
namespace {

constexpr std::string_view kDockerHub = "docker.io";
constexpr size_t kMaxNameLength = 255;

// Transports other tools know that lazyfs does not (yet) read; named so the error is helpful
// instead of "malformed reference".
constexpr std::string_view kKnownUnsupported[] = {"containers-storage", "dir", "docker-daemon"};

bool IsDomainComponent(std::string_view first) {
  return first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
         (first.size() > 0 && first.front() == '[');
}

const std::regex& DomainRegex() {
  // host components (or a bracketed IPv6 literal), optional :port.
  static const std::regex re(
      R"((?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?)");
  return re;
}

const std::regex& PathComponentRegex() {
  static const std::regex re(R"([a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)");
  return re;
}

const std::regex& TagRegex() {
  static const std::regex re(R"([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})");
  return re;
}

Status Malformed(std::string_view text, std::string_view why) {
  return InvalidArgumentError("malformed image reference \"" + std::string(text) +
                              "\": " + std::string(why));
}

Result<ImageRef> ParseDockerName(std::string_view text, std::string_view name);

// oci:DIR[:TAG] and oci-archive:FILE[:TAG].
Result<ImageRef> ParseOciLayout(std::string_view text, std::string_view rest,
                                Transport transport) {
  ImageRef ref;
  ref.transport = transport;
  // A ':' separates the tag only when nothing after it looks like a path, so directories whose
  // names contain ':' still work when no tag is given.
  const size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && rest.find('/', colon) == std::string_view::npos) {
    ref.path = std::string(rest.substr(0, colon));
    ref.tag = std::string(rest.substr(colon + 1));
    if (ref.tag.empty()) return Malformed(text, "empty tag after ':'");
  } else {
    ref.path = std::string(rest);
  }
  if (ref.path.empty()) {
    return Malformed(text, transport == Transport::kOciLayout ? "oci: needs a layout directory"
                                                              : "oci-archive: needs a file");
  }
  return ref;
}

// docker-archive:FILE[:REPO:TAG]. The image name itself contains ':' (and may contain a
// registry port), so FILE ends at the first ':', as in other container tools.
Result<ImageRef> ParseDockerArchive(std::string_view text, std::string_view rest) {
  ImageRef ref;
  ref.transport = Transport::kDockerArchive;
  const size_t colon = rest.find(':');
  ref.path = std::string(rest.substr(0, colon));
  if (ref.path.empty()) return Malformed(text, "docker-archive: needs a file");
  if (colon == std::string_view::npos) return ref;
  ref.tag = std::string(rest.substr(colon + 1));
  if (ref.tag.empty()) return Malformed(text, "empty image name after ':'");
  // The name must be one `docker save` could have recorded: NAME:TAG, no digest.
  auto named = ParseDockerName(text, ref.tag);
  if (!named.ok()) return named.status();
  if (named->digest) return Malformed(text, "docker-archive: names images by REPO:TAG, not digest");
  return ref;
}

Result<ImageRef> ParseDockerName(std::string_view text, std::string_view name) {
  if (name.empty()) return Malformed(text, "empty name");
  ImageRef ref;
  ref.transport = Transport::kDocker;

  if (const size_t at = name.find('@'); at != std::string_view::npos) {
    auto digest = Digest::Parse(name.substr(at + 1));
    if (!digest.ok()) {
      return digest.status().WithContext("image reference \"" + std::string(text) + "\"");
    }
    ref.digest = *digest;
    name = name.substr(0, at);
  }
  if (const size_t colon = name.rfind(':');
      colon != std::string_view::npos && name.find('/', colon) == std::string_view::npos) {
    std::string tag(name.substr(colon + 1));
    if (!std::regex_match(tag, TagRegex())) {
      return Malformed(text, "invalid tag \"" + tag + "\"");
    }
    ref.tag = std::move(tag);
    name = name.substr(0, colon);
  }
  if (name.empty()) return Malformed(text, "empty repository");

  std::string_view path = name;
  const size_t slash = name.find('/');
  if (slash != std::string_view::npos && IsDomainComponent(name.substr(0, slash))) {
    ref.registry = std::string(name.substr(0, slash));
    path = name.substr(slash + 1);
    if (!std::regex_match(ref.registry, DomainRegex())) {
      return Malformed(text, "invalid registry host \"" + ref.registry + "\"");
    }
    if (ref.registry == "index.docker.io" || ref.registry == "registry-1.docker.io") {
      ref.registry = std::string(kDockerHub);
    }
  } else {
    ref.registry = std::string(kDockerHub);
  }
  if (path.empty()) return Malformed(text, "empty repository");
  std::string repo(path);
  if (ref.registry == kDockerHub && repo.find('/') == std::string::npos) {
    repo = "library/" + repo;
  }
  size_t start = 0;
  while (start <= repo.size()) {
    size_t end = repo.find('/', start);
    if (end == std::string::npos) end = repo.size();
    const std::string component = repo.substr(start, end - start);
    if (!std::regex_match(component, PathComponentRegex())) {
      if (std::any_of(component.begin(), component.end(),
                      [](char c) { return c >= 'A' && c <= 'Z'; })) {
        return Malformed(text, "repository name must be lowercase");
      }
      return Malformed(text, "invalid repository component \"" + component + "\"");
    }
    start = end + 1;
  }
  if (ref.registry.size() + 1 + repo.size() > kMaxNameLength) {
    return Malformed(text, "name longer than 255 characters");
  }
  ref.repository = std::move(repo);
  if (ref.tag.empty() && !ref.digest) ref.tag = "latest";
  return ref;
}

std::string NormaliseArch(std::string_view arch, std::string* variant) {
  if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") return "amd64";
  if (arch == "aarch64" || arch == "arm64") return "arm64";
  if (arch == "armhf") {
    if (variant->empty()) *variant = "v7";
    return "arm";
  }
  if (arch == "armel") {
    if (variant->empty()) *variant = "v6";
    return "arm";
  }
  if (arch == "i386" || arch == "i486" || arch == "i586" || arch == "i686" || arch == "386") {
    return "386";
  }
  return std::string(arch);
}

}  // namespace

Result<ImageRef> ImageRef::Parse(std::string_view text) {
  if (text.starts_with("docker://")) return ParseDockerName(text, text.substr(9));
  if (text.starts_with("oci:")) {
    return ParseOciLayout(text, text.substr(4), Transport::kOciLayout);
  }
  if (text.starts_with("oci-archive:")) {
    return ParseOciLayout(text, text.substr(12), Transport::kOciArchive);
  }
  if (text.starts_with("docker-archive:")) return ParseDockerArchive(text, text.substr(15));
  for (std::string_view t : kKnownUnsupported) {
    if (text.size() > t.size() && text.starts_with(t) && text[t.size()] == ':') {
      return UnimplementedError("image reference \"" + std::string(text) + "\": transport " +
                                std::string(t) + ": is not supported");
    }
  }
  if (const size_t scheme = text.find("://"); scheme != std::string_view::npos) {
    return Malformed(text, "unknown transport \"" + std::string(text.substr(0, scheme)) +
                               "://\" (use docker://, oci:, oci-archive:, docker-archive: or "
                               "a bare name)");
  }
  return ParseDockerName(text, text);
}

std::string ImageRef::ToString() const {
  switch (transport) {
    case Transport::kOciLayout:
      return tag.empty() ? "oci:" + path : "oci:" + path + ":" + tag;
    case Transport::kOciArchive:
      return tag.empty() ? "oci-archive:" + path : "oci-archive:" + path + ":" + tag;
    case Transport::kDockerArchive:
      return tag.empty() ? "docker-archive:" + path : "docker-archive:" + path + ":" + tag;
    case Transport::kDocker:
      break;
  }
  std::string out = "docker://" + registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (digest) out += "@" + digest->ToString();
  return out;
}

Result<Platform> Platform::Parse(std::string_view text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t slash = text.find('/', start);
    parts.emplace_back(text.substr(start, slash == std::string_view::npos ? std::string_view::npos
                                                                           : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() < 2 || parts.size() > 3 ||
      std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); })) {
    return InvalidArgumentError("malformed platform \"" + std::string(text) +
                                "\": expected OS/ARCH[/VARIANT]");
  }
  Platform p;
  p.os = parts[0];
  std::transform(p.os.begin(), p.os.end(), p.os.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (parts.size() == 3) p.variant = parts[2];
  p.architecture = NormaliseArch(parts[1], &p.variant);
  return p;
}

Platform Platform::Host() {
  Platform p;
  struct utsname u;
  if (::uname(&u) != 0) {
    p.architecture = "amd64";
    return p;
  }
  const std::string_view m = u.machine;
  if (m == "aarch64" || m == "arm64") {
    p.architecture = "arm64";
    p.variant = "v8";
  } else if (m.starts_with("armv") && m.size() >= 5 && m[4] >= '5' && m[4] <= '8') {
    // A 32-bit kernel (armv8l is an ARMv8 CPU in 32-bit mode) runs 32-bit arm images; v7 is
    // the newest 32-bit variant images are published for.
    p.architecture = "arm";
    p.variant = m[4] == '8' ? "v7" : std::string("v") + m[4];
  } else if (m == "ppc64le" || m == "s390x" || m == "riscv64" || m == "mips64" ||
             m == "loongarch64") {
    p.architecture = std::string(m);
  } else {
    p.architecture = NormaliseArch(m, &p.variant);
  }
  return p;
}

std::string Platform::ToString() const {
  std::string out = os + "/" + architecture;
  if (!variant.empty()) out += "/" + variant;
  return out;
}

}  // namespace lazyfs::fetch
