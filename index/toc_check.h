// What an eStargz or zstd:chunked TOC claims, checked against the tar stream itself.
//
// A TOC layer is indexed and read through its table of contents, which the manifest vouches for
// only by its digest: a TOC that disagrees with the layer's tar stream (the bytes the diff_id
// covers, and what every other container tool unpacks) would show files that the image does not
// hold, or give a file modes, owners or xattrs its tar header does not. Once every byte of the
// layer is present, the stream is read through and every entry compared with the TOC's: type,
// mode, owner, link target, device, size, xattrs, and each regular file's content digest and
// chunk digests.
#pragma once

#include "base/image.h"
#include "base/status.h"
#include "index/layer_reader.h"
#include "index/records.h"

namespace lazyfs::index {

// What `claimed` (an entry as a TOC or an index artifact has it) says of an entry that the tar
// stream says otherwise ("mode 0755 in the tar stream, 04755 in CLAIMANT"), or "" when they
// agree; modification times and content digests are not compared (a TOC keeps whole seconds).
std::string EntryDisagreement(const LayerEntry& tar, const LayerEntry& claimed,
                              std::string_view claimant);

// Reads the complete layer blob at `fd` (already checked against its digest and diff_id) and
// compares it with the layer's TOC records. DataLoss naming the first file where they disagree
// (a content or chunk digest, any metadata but the time, an entry one lists and the other not).
Status CheckTocAgainstStream(int fd, const LayerDescriptor& layer, const Records& records,
                             const LayerReadOptions& options);

}  // namespace lazyfs::index
