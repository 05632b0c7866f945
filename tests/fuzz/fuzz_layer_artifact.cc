// libFuzzer target: an index artifact as a registry may serve it, decoded for a fixed layer. A
// hostile blob (a bomb, a lying count, an offset past the layer, a bad name) must end in an
// error, never a crash, an overread or unbounded memory. The seed corpus holds real artifacts
// of the layer described below, so mutations start from blobs that pass the header check.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "index/layer_artifact.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lazyfs::LayerDescriptor layer = [] {
    lazyfs::LayerDescriptor l;
    // tests/fuzz/corpus/fuzz_layer_artifact/README: the layer the seeds index.
    l.digest = *lazyfs::Digest::Parse(
        "sha256:0000000000000000000000000000000000000000000000000000000000000000");
    l.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    l.size = 1 << 20;
    return l;
  }();
  lazyfs::index::IndexOptions options;
  options.max_entries_per_layer = 10000;
  auto art = lazyfs::index::DecodeLayerArtifact(
      layer, std::string_view(reinterpret_cast<const char*>(data), size), options);
  if (art.ok()) (void)lazyfs::index::EncodeLayerArtifact(layer, *art);
  return 0;
}
