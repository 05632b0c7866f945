// The whole-layer source (content_source.h): the layer read once, every file stored whole.
#include "index/content_source.h"
#include "index/layer_indexer.h"

namespace lazyfs::index {
namespace {

class WholeLayerSource final : public ContentSource {
 public:
  WholeLayerSource(LayerDescriptor layer, const SourceContext& ctx)
      : layer_(std::move(layer)), ctx_(ctx) {}

  Result<size_t> Read(const Digest& file, uint64_t, uint64_t offset, std::span<std::byte> out,
                      const Deadline&, bool* fetched) override {
    *fetched = true;
    LAZYFS_RETURN_IF_ERROR(FetchFile(file, Deadline::Never()).status());
    if (!ctx_.cache->Contains(file)) {
      return DataLossError("layer " + layer_.digest.Short() + " does not hold content " +
                           file.Short());
    }
    return ctx_.cache->Read(file, offset, out);
  }

  // Brings the layer's files into the cache by reading it whole (once, however many ask): whole
  // files, and the data chunks of sparse ones.
  Result<uint64_t> FetchFile(const Digest&, const Deadline&) override {
    LAZYFS_ASSIGN_OR_RETURN(auto rec, ctx_.records->Layer(layer_.digest));
    if (!rec) return Corrupt("of layer " + layer_.digest.Short() + " (missing)");
    LAZYFS_ASSIGN_OR_RETURN(auto entries, ctx_.records->Entries(layer_.digest, *rec));
    LAZYFS_RETURN_IF_ERROR(ctx_.cache->ExtractLayer(layer_, *ctx_.blobs, entries,
                                                    StreamReadOptions(*ctx_.options, layer_.size)));
    return layer_.size;
  }

 private:

  const LayerDescriptor layer_;
  const SourceContext ctx_;
};

}  // namespace

std::unique_ptr<ContentSource> MakeWholeLayerSource(const LayerDescriptor& layer,
                                                    const SourceContext& ctx) {
  return std::make_unique<WholeLayerSource>(layer, ctx);
}

}  // namespace lazyfs::index
