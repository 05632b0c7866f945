// gzip through ISA-L's igzip, with the block boundaries an indexer needs.
//
// Each member's header is read by zlib (gzip mode, Z_BLOCK: it stops right after the header),
// so headers, trailing garbage and their error texts are exactly the zlib inflater's; the
// deflate data and the CRC/ISIZE check (ISAL_GZIP_NO_HDR_VER) are igzip's. A resume at a
// checkpoint is raw deflate primed with the window and the bits of the block's first byte,
// its member's trailer skipped unchecked, as the zlib inflater does.
//
// igzip (2.30) runs on across blocks and never stops at a boundary by itself. After every
// call, whole bytes its bit buffer holds are handed back to the caller (so a position is always
// "these bytes, less fewer than 8 bits"); a call whose input ends inside a block header leaves
// igzip exactly at that block's start (ISAL_BLOCK_HDR, the header bytes kept aside: handed back
// too). Boundaries are looked for only once the wanted spacing is reached: a stored block's end
// is known from its length; a Huffman block's is found by feeding a piece of input after a
// snapshot of the state and, when a new block header was read in it (the decoding tables
// changed), bisecting the piece from the snapshot until the input ends inside that header.
// What is reported is only ever a state igzip itself is in between blocks, so every checkpoint
// is exact; a boundary this misses (a 3-bit fixed-Huffman header inside one byte) only moves
// the checkpoint to a later block.
#include "index/inflate_isal.h"

#ifdef LAZYFS_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <string>
#endif

namespace lazyfs::index {

#ifndef LAZYFS_HAVE_ISAL

bool IsalAvailable() { return false; }

Result<std::unique_ptr<Inflater>> OpenIsalGzip(const Checkpoint*, const InflateOptions&) {
  return UnimplementedError("lazyfs was built without ISA-L");
}

#else

namespace {

// The input piece fed at a time while looking for a boundary: a few blocks' headers' worth
// less than a typical block (tens of KiB), so a piece seldom holds two headers, and cheap to
// bisect (12 halvings, each a copy of the 85 KiB state).
constexpr size_t kProbePiece = 4096;
// igzip counts in 32 bits.
constexpr size_t kMaxCall = size_t{1} << 30;

std::string IsalMessage(int rc) {
  switch (rc) {
    case ISAL_INVALID_BLOCK: return "invalid block type or stored block lengths";
    case ISAL_INVALID_SYMBOL: return "invalid literal/length or distance code";
    case ISAL_INVALID_LOOKBACK: return "invalid distance too far back";
    case ISAL_INCORRECT_CHECKSUM: return "incorrect data or length check";
    default: return "igzip error " + std::to_string(rc);
  }
}

// Input used and output written by one call, or from a piece's start.
struct Ran {
  size_t consumed = 0;
  size_t produced = 0;
};

class IsalGzipInflater final : public Inflater {
 public:
  explicit IsalGzipInflater(const InflateOptions& o)
      : boundaries_(o.boundaries),
        every_out_(std::max<uint64_t>(o.boundary_every_uncompressed, 1)),
        every_in_(std::max<uint64_t>(o.boundary_every_compressed, 1)) {}
  ~IsalGzipInflater() override {
    if (zinit_) inflateEnd(&zs_);
  }

  Status Init(const Checkpoint* cp);
  Result<InflateStep> Inflate(std::string_view in, std::span<char> out) override;
  bool complete() const override { return phase_ == Phase::kDone; }
  std::string_view format() const override { return "gzip"; }
  std::string_view engine() const override { return "igzip"; }

 private:
  enum class Phase { kHeader, kBody, kTrailer, kDone };

  Status Between(std::string_view& in, std::span<char> out, InflateStep& step);
  Result<bool> ReadHeader(std::string_view& in, std::span<char> out, InflateStep& step);
  Status Stretch(std::string_view in, std::span<char> out, InflateStep& step);
  Status Probe(std::string_view in, std::span<char> out, InflateStep& step);
  Status Bisect(std::string_view piece, std::span<char> out, InflateStep& step);
  Result<Ran> Run(std::string_view in, std::span<char> out);
  bool AtBoundary(Ran& r);

  bool Armed(const InflateStep& step) const {
    return boundaries_ && (in_since_ + step.consumed >= every_in_ ||
                           out_since_ + step.produced >= every_out_);
  }
  // A block header was read since `before` (new tables, or a stored block began or ended).
  bool Changed(const inflate_state& before) const {
    return (st_->block_state == ISAL_BLOCK_TYPE0) != (before.block_state == ISAL_BLOCK_TYPE0) ||
           std::memcmp(&st_->lit_huff_code, &before.lit_huff_code, sizeof(before.lit_huff_code)) ||
           std::memcmp(&st_->dist_huff_code, &before.dist_huff_code,
                       sizeof(before.dist_huff_code));
  }
  void Mark(InflateStep& step) const {
    step.boundary = true;
    step.bits = static_cast<uint8_t>(st_->read_in_length);
  }
  void Add(InflateStep& step, const Ran& r) const {
    step.consumed += r.consumed;
    step.produced += r.produced;
  }
  void EndMember() {
    // A raw resume knows nothing of the trailer: skip it, as the zlib inflater does (igzip
    // may hold its first bytes already, past the last block's padding bits).
    phase_ = raw_ ? Phase::kTrailer : Phase::kDone;
    skip_ = raw_ ? 8 - std::min<size_t>(8, static_cast<size_t>(st_->read_in_length / 8)) : 0;
    raw_ = false;
    if (skip_ == 0) phase_ = Phase::kDone;
  }

  const bool boundaries_;
  const uint64_t every_out_, every_in_;
  z_stream zs_{};  // reads member headers only
  bool zinit_ = false;
  std::unique_ptr<inflate_state> st_ = std::make_unique<inflate_state>();
  std::unique_ptr<inflate_state> lo_;  // the state a probe can go back to
  Phase phase_ = Phase::kHeader;
  bool raw_ = false;  // resumed: raw deflate to the end of the member
  int prime_bits_ = 0;
  size_t skip_ = 0;
  uint64_t in_since_ = 0, out_since_ = 0;  // since the last boundary reported
};

Status IsalGzipInflater::Init(const Checkpoint* cp) {
  if (inflateInit2(&zs_, 15 + 16) != Z_OK) return InternalError("inflateInit2 failed");
  zinit_ = true;
  isal_inflate_init(st_.get());
  if (!cp) return Status::Ok();
  phase_ = Phase::kBody;
  raw_ = true;
  prime_bits_ = cp->bits;
  st_->crc_flag = ISAL_DEFLATE;
  if (!cp->window.empty() &&
      isal_inflate_set_dict(st_.get(),
                            reinterpret_cast<uint8_t*>(const_cast<char*>(cp->window.data())),
                            static_cast<uint32_t>(cp->window.size())) != COMP_OK) {
    return InternalError("isal_inflate_set_dict failed");
  }
  return Status::Ok();
}

Result<InflateStep> IsalGzipInflater::Inflate(std::string_view in, std::span<char> out) {
  InflateStep step;
  LAZYFS_RETURN_IF_ERROR(Between(in, out, step));
  if (phase_ == Phase::kBody && !step.boundary) {
    const std::span<char> room = out.subspan(step.produced);
    if (Armed(step)) {
      LAZYFS_RETURN_IF_ERROR(Probe(in, room, step));
    } else {
      LAZYFS_RETURN_IF_ERROR(Stretch(in, room, step));
    }
  }
  if (step.boundary) {
    in_since_ = out_since_ = 0;
  } else {
    in_since_ += step.consumed;
    out_since_ += step.produced;
  }
  return step;
}

// What comes before deflate data: the first byte's bits of a resume, the trailer a resume
// skips, the next member's header. Uses what it reads from `in`.
Status IsalGzipInflater::Between(std::string_view& in, std::span<char> out, InflateStep& step) {
  auto use = [&](size_t n) {
    in.remove_prefix(n);
    step.consumed += n;
  };
  if (prime_bits_ && !in.empty()) {
    st_->read_in = static_cast<uint8_t>(in[0]) >> (8 - prime_bits_);
    st_->read_in_length = prime_bits_;
    prime_bits_ = 0;
    use(1);
  }
  if (phase_ == Phase::kTrailer) {
    const size_t n = std::min(skip_, in.size());
    use(n);
    skip_ -= n;
    if (skip_) return Status::Ok();
    phase_ = Phase::kDone;
  }
  if (phase_ == Phase::kDone) {
    // Another member follows (or nothing does: the stream is complete).
    if (in.empty()) return Status::Ok();
    if (inflateReset2(&zs_, 15 + 16) != Z_OK) return InternalError("inflateReset2 failed");
    phase_ = Phase::kHeader;
  }
  if (phase_ != Phase::kHeader) return Status::Ok();
  LAZYFS_ASSIGN_OR_RETURN(bool read, ReadHeader(in, out, step));
  // Right after a header is a boundary too, the one a member's first block starts at.
  if (read && Armed(step)) step.boundary = true;
  return Status::Ok();
}

// zlib reads the member header and stops before the first block (Z_BLOCK); true once it has.
Result<bool> IsalGzipInflater::ReadHeader(std::string_view& in, std::span<char> out,
                                          InflateStep& step) {
  zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs_.avail_in = static_cast<uInt>(std::min(in.size(), kMaxCall));
  zs_.next_out = reinterpret_cast<Bytef*>(out.data());
  zs_.avail_out = static_cast<uInt>(std::min(out.size(), kMaxCall));
  const uInt avail_in = zs_.avail_in;
  const int rc = inflate(&zs_, Z_BLOCK);
  const size_t used = avail_in - zs_.avail_in;
  in.remove_prefix(used);
  step.consumed += used;
  if (rc != Z_OK && !(rc == Z_BUF_ERROR && zs_.avail_in == 0)) {
    return DataLossError(std::string("corrupt gzip stream (") +
                         (zs_.msg ? zs_.msg : "zlib error") + ")");
  }
  if (!(zs_.data_type & 128)) return false;
  // A header ends on a byte: zlib holds no bits of the deflate data.
  if ((zs_.data_type & 7) != 0) return InternalError("gzip header read ends inside a byte");
  isal_inflate_reset(st_.get());
  st_->crc_flag = ISAL_GZIP_NO_HDR_VER;
  phase_ = Phase::kBody;
  return true;
}

// Inflates as much as the call allows, stopping where a boundary becomes wanted.
Status IsalGzipInflater::Stretch(std::string_view in, std::span<char> out, InflateStep& step) {
  if (!Armed(step) && boundaries_) {
    in = in.substr(0, every_in_ - in_since_ - step.consumed);
    out = out.subspan(0, std::min<uint64_t>(out.size(), every_out_ - out_since_ - step.produced));
  }
  LAZYFS_ASSIGN_OR_RETURN(Ran r, Run(in, out));
  if (st_->block_state == ISAL_BLOCK_FINISH) {
    Add(step, r);
    EndMember();
  } else {
    const bool boundary = Armed(step) && AtBoundary(r);
    Add(step, r);
    if (boundary) Mark(step);
  }
  return Status::Ok();
}

// A boundary is wanted: one piece of input, stopping at the first boundary found in it.
Status IsalGzipInflater::Probe(std::string_view in, std::span<char> out, InflateStep& step) {
  const int state = st_->block_state;
  if (state == ISAL_BLOCK_INPUT_DONE || state >= ISAL_BLOCK_FINISH) {
    // The member's last block is done: no boundary before the next member.
    return Stretch(in, out, step);
  }
  // A stored block ends where its length says (less what igzip holds of it).
  const size_t held = static_cast<size_t>(st_->read_in_length / 8);
  const size_t stored_len = static_cast<size_t>(std::max(st_->type0_block_len, 0));
  const size_t stored_rest = stored_len > held ? stored_len - held : 0;
  const size_t piece = std::min(in.size(), state == ISAL_BLOCK_TYPE0 ? stored_rest : kProbePiece);
  if (!lo_) lo_ = std::make_unique<inflate_state>();
  *lo_ = *st_;
  LAZYFS_ASSIGN_OR_RETURN(Ran r, Run(in.substr(0, piece), out));
  const bool stalled = st_->tmp_out_valid != st_->tmp_out_processed || r.produced == out.size();
  if (st_->block_state == ISAL_BLOCK_FINISH) {
    Add(step, r);
    EndMember();
  } else if (AtBoundary(r)) {
    Add(step, r);
    Mark(step);
  } else if (stalled || state == ISAL_BLOCK_TYPE0 || !Changed(*lo_)) {
    // Output full, or no header in the piece: the next piece, on the next call.
    Add(step, r);
  } else {
    *st_ = *lo_;
    return Bisect(in.substr(0, piece), out, step);
  }
  return Status::Ok();
}

// A block header was read somewhere in `piece` (from the state in lo_): halves the piece until
// the input ends inside that header, igzip then waiting at the block's start.
Status IsalGzipInflater::Bisect(std::string_view piece, std::span<char> out, InflateStep& step) {
  Ran lo;                    // where the state in lo_ is, from the piece's start
  size_t hi = piece.size();  // feeding this much reads the header
  while (hi - lo.consumed > 1) {
    const size_t mid = lo.consumed + (hi - lo.consumed) / 2;
    *st_ = *lo_;
    LAZYFS_ASSIGN_OR_RETURN(Ran r, Run(piece.substr(lo.consumed, mid - lo.consumed),
                                       out.subspan(lo.produced)));
    Ran at{lo.consumed + r.consumed, lo.produced + r.produced};
    if (AtBoundary(at)) {
      Add(step, at);
      Mark(step);
      return Status::Ok();
    }
    const bool stalled = st_->tmp_out_valid != st_->tmp_out_processed || at.produced == out.size();
    if (stalled || at.consumed != mid || st_->block_state != ISAL_BLOCK_CODED) {
      // Output full, or the member's end reached: carry on from here.
      Add(step, at);
      if (st_->block_state == ISAL_BLOCK_FINISH) EndMember();
      return Status::Ok();
    }
    if (Changed(*lo_)) {
      hi = mid;
    } else {
      *lo_ = *st_;
      lo = at;
    }
  }
  // A header inside one byte (fixed Huffman): no boundary here; past it from lo.
  *st_ = *lo_;
  LAZYFS_ASSIGN_OR_RETURN(Ran r, Run(piece.substr(lo.consumed), out.subspan(lo.produced)));
  Add(step, Ran{lo.consumed + r.consumed, lo.produced + r.produced});
  if (st_->block_state == ISAL_BLOCK_FINISH) EndMember();
  return Status::Ok();
}

// One isal_inflate call. igzip takes all the input it is given (unless the output fills),
// keeping what it cannot decode yet.
Result<Ran> IsalGzipInflater::Run(std::string_view in, std::span<char> out) {
  inflate_state& s = *st_;
  s.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(in.data()));
  s.avail_in = static_cast<uint32_t>(std::min(in.size(), kMaxCall));
  s.next_out = reinterpret_cast<uint8_t*>(out.data());
  s.avail_out = static_cast<uint32_t>(std::min(out.size(), kMaxCall));
  const uint32_t avail_in = s.avail_in, avail_out = s.avail_out;
  const int rc = isal_inflate(&s);
  if (rc < 0) return DataLossError("corrupt gzip stream (" + IsalMessage(rc) + ")");
  return Ran{avail_in - s.avail_in, avail_out - s.avail_out};
}

// Whether igzip waits at a block's start with all its output delivered: between blocks, or
// with the input ended inside the next block's header. Then the bytes it holds past that
// start (its bit buffer's whole bytes, the header bytes it kept aside) are handed back, taken
// off `r`, so the step ends at the block's first byte, less `read_in_length` bits. Not when
// those bytes came in an earlier call: they cannot be handed back any more.
bool IsalGzipInflater::AtBoundary(Ran& r) {
  inflate_state& s = *st_;
  if (s.tmp_out_valid != s.tmp_out_processed) return false;
  if (s.block_state != ISAL_BLOCK_NEW_HDR && s.block_state != ISAL_BLOCK_HDR) return false;
  const size_t held = (s.block_state == ISAL_BLOCK_HDR ? s.tmp_in_size : 0) +
                      static_cast<size_t>(s.read_in_length / 8);
  if (held > r.consumed) return false;
  r.consumed -= held;
  s.tmp_in_size = 0;
  s.block_state = ISAL_BLOCK_NEW_HDR;
  s.read_in_length %= 8;
  s.read_in &= (uint64_t{1} << s.read_in_length) - 1;
  return true;
}

}  // namespace

bool IsalAvailable() { return true; }

Result<std::unique_ptr<Inflater>> OpenIsalGzip(const Checkpoint* resume,
                                               const InflateOptions& options) {
  auto g = std::make_unique<IsalGzipInflater>(options);
  LAZYFS_RETURN_IF_ERROR(g->Init(resume));
  return std::unique_ptr<Inflater>(std::move(g));
}

#endif  // LAZYFS_HAVE_ISAL

}  // namespace lazyfs::index
