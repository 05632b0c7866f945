// The registry client's writes (declared in registry_client.h): blob uploads, monolithic or in
// chunks, manifest PUTs, and the referrers API read that publishing pairs with.
//
// An upload is a session the registry names by URL (its Location answers). Any step of it may
// fail; a retry starts a new session rather than guessing how much of a broken PATCH arrived.
#include <algorithm>

#include "base/text.h"
#include "fetch/manifest.h"
#include "fetch/registry_client.h"

namespace lazyfs::fetch {
namespace {

// Where the next step of an upload goes: the response's Location, resolved against the URL
// that answered.
Result<std::string> NextLocation(const HttpResponse& response, const std::string& base,
                                 const std::string& what) {
  const std::string location = response.Header("location");
  if (location.empty()) {
    return InvalidArgumentError(what + ": HTTP " + std::to_string(response.status) +
                                " without a Location");
  }
  return ResolveUrl(base, location);
}

std::string WithQuery(const std::string& url, const std::string& param) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + param;
}

}  // namespace

Result<bool> RegistryClient::BlobExists(const Digest& digest) {
  const Deadline deadline = Deadline::Never();
  auto size = BlobSize(digest, deadline);
  if (size.ok()) return true;
  if (size.status().code() == StatusCode::kNotFound) return false;
  return size.status();
}

Result<std::optional<HttpResponse>> RegistryClient::UploadChunks(std::string_view bytes,
                                                                 std::string* location,
                                                                 const Deadline& deadline) {
  const uint64_t chunk = std::max<uint64_t>(1, options_.upload_chunk_size);
  for (uint64_t offset = 0; offset < bytes.size(); offset += chunk) {
    const std::string_view part = bytes.substr(offset, chunk);
    const std::string range =
        std::to_string(offset) + "-" + std::to_string(offset + part.size() - 1);
    HttpRequest patch;
    patch.method = "PATCH";
    patch.upload = part;
    patch.deadline = deadline;
    patch.headers = {"Content-Type: application/octet-stream", "Content-Range: " + range};
    LAZYFS_ASSIGN_OR_RETURN(HttpResponse response, Request(patch, *location, Access::kPush));
    if (response.status != 202) return response;
    // The registry says what it holds; a session that lost bytes is started again.
    const std::string held = response.Header("range");
    if (!held.empty() && held != "0-" + std::to_string(offset + part.size() - 1) &&
        held != "bytes=0-" + std::to_string(offset + part.size() - 1)) {
      return UnavailableError(Describe() + ": upload holds " + QuoteName(held) + " after " +
                              range);
    }
    LAZYFS_ASSIGN_OR_RETURN(*location, NextLocation(response, *location, "upload chunk"));
  }
  return std::optional<HttpResponse>();
}

Result<HttpResponse> RegistryClient::UploadOnce(const Digest& digest, std::string_view bytes,
                                                const Deadline& deadline) {
  HttpRequest post;
  post.method = "POST";
  post.deadline = deadline;
  const std::string path = "/v2/" + repository_ + "/blobs/uploads/";
  LAZYFS_ASSIGN_OR_RETURN(HttpResponse opened, Request(post, path, Access::kPush));
  if (opened.status != 202) return opened;
  LAZYFS_ASSIGN_OR_RETURN(std::string location,
                          NextLocation(opened, BaseUrl() + path, "upload POST"));
  HttpRequest put;
  put.method = "PUT";
  put.deadline = deadline;
  put.headers = {"Content-Type: application/octet-stream"};
  if (bytes.size() > options_.upload_chunk_size) {
    LAZYFS_ASSIGN_OR_RETURN(std::optional<HttpResponse> unexpected,
                            UploadChunks(bytes, &location, deadline));
    if (unexpected) return std::move(*unexpected);
  } else {
    put.upload = bytes;
  }
  return Request(put, WithQuery(location, "digest=" + UrlEscape(digest.ToString())),
                 Access::kPush);
}

Status RegistryClient::PutBlob(const Digest& digest, std::string_view bytes) {
  const std::string what = "upload of blob " + digest.ToString();
  const Deadline deadline = Deadline::In(DownloadTimeLimit(bytes.size(), options_));
  LAZYFS_ASSIGN_OR_RETURN(HttpResponse response, WithRetries(what, deadline, [&] {
                            return UploadOnce(digest, bytes, deadline);
                          }));
  if (response.status != 201) return ErrorFor(response, what);
  return Status::Ok();
}

Result<RegistryClient::PushedManifest> RegistryClient::PutManifest(const std::string& reference,
                                                                   std::string_view bytes,
                                                                   std::string_view media_type) {
  if (bytes.size() > kMaxManifestSize) {
    return ResourceExhaustedError(Describe() + ": manifest \"" + reference +
                                  "\" to push is larger than 4 MiB");
  }
  const std::string what = "push of manifest \"" + reference + "\"";
  HttpRequest put;
  put.method = "PUT";
  put.upload = bytes;
  put.headers = {"Content-Type: " + std::string(media_type)};
  LAZYFS_ASSIGN_OR_RETURN(HttpResponse response, WithRetries(what, Deadline::Never(), [&] {
                            return Request(put, "/v2/" + repository_ + "/manifests/" + reference,
                                           Access::kPush);
                          }));
  if (response.status != 201 && response.status != 200) return ErrorFor(response, what);
  PushedManifest out;
  out.digest = Sha256Of(bytes);
  out.subject_indexed = !response.Header("oci-subject").empty();
  if (const std::string stated = response.Header("docker-content-digest"); !stated.empty()) {
    auto parsed = Digest::Parse(stated);
    if (!parsed.ok() || *parsed != out.digest) {
      return DataLossError(Describe() + ": " + what + ": the registry reports digest " +
                           QuoteName(stated) + ", the bytes are " + out.digest.ToString());
    }
  }
  return out;
}

Result<std::optional<RegistryClient::RawManifest>> RegistryClient::GetReferrers(
    const Digest& subject, std::string_view artifact_type) {
  HttpRequest request;
  request.headers.push_back("Accept: " + std::string(kOciIndex));
  request.max_body = kMaxManifestSize;
  std::string path = "/v2/" + repository_ + "/referrers/" + subject.ToString();
  if (!artifact_type.empty()) path += "?artifactType=" + UrlEscape(artifact_type);
  const std::string what = "referrers of " + subject.ToString();
  auto response = WithRetries(what, Deadline::Never(), [&] { return Request(request, path); });
  if (!response.ok()) {
    if (response.status().code() == StatusCode::kResourceExhausted) {
      return ResourceExhaustedError(Describe() + ": " + what + ": the list is larger than 4 MiB");
    }
    return response.status();
  }
  if (response->status == 404) return std::optional<RawManifest>();
  if (response->status != 200) return ErrorFor(*response, what);
  return std::optional<RawManifest>(
      RawManifest{std::move(response->body), response->Header("content-type")});
}

}  // namespace lazyfs::fetch
