// The igzip gzip inflater (inflate_isal.cc): what inflate.cc needs to choose it.
#pragma once

#include <memory>

#include "base/status.h"
#include "index/checkpoint.h"
#include "index/inflate.h"

namespace lazyfs::index {

// A gzip Inflater over ISA-L's igzip, from the start of a stream or resumed at `resume`.
// Unimplemented when lazyfs was built without ISA-L (IsalAvailable() is false then).
Result<std::unique_ptr<Inflater>> OpenIsalGzip(const Checkpoint* resume,
                                               const InflateOptions& options);

}  // namespace lazyfs::index
