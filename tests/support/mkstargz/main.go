// mkstargz: writes an eStargz or zstd:chunked layer from a tar with the estargz Go package
// (Debian: golang-github-containerd-stargz-snapshotter-dev), so tests check lazyfs against
// layers written by a tool that is not lazyfs. Built offline in GOPATH mode:
//   GO111MODULE=off GOPATH=/usr/share/gocode go build -o mkstargz tests/support/mkstargz
// Prints "TOC_DIGEST DIFF_ID". An optional fourth argument, comma-separated tar names, lists
// the files to put first, before a .prefetch.landmark (without it: .no.prefetch.landmark).
// An optional fifth argument makes the TOC lie about the tar stream it describes (the layer is
// otherwise well-formed: its TOC digest and diff_id are those of the bytes written), for tests
// that lazyfs refuses such a layer: "rename:OLD=NEW" renames an entry (and its chunks),
// "mode:NAME=OCTAL" changes an entry's mode bits, "digest:NAME=sha256:HEX" names other content
// for a file of one chunk.
package main

import (
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	digest "github.com/opencontainers/go-digest"
)

// estargz.Compression is a compressor and a decompressor in one.
type zstdChunked struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

// A compression whose TOC is edited by `lie` before it is written.
type lying struct {
	estargz.Compression
	lie string
}

func (l lying) WriteTOCAndFooter(w io.Writer, off int64, toc *estargz.JTOC, diffHash hash.Hash) (digest.Digest, error) {
	kind, rest, _ := strings.Cut(l.lie, ":")
	name, value, _ := strings.Cut(rest, "=")
	for _, e := range toc.Entries {
		if e.Name != name {
			continue
		}
		switch kind {
		case "rename":
			e.Name = value
		case "digest":
			if e.Type == "reg" { e.Digest = value }
			e.ChunkDigest = value
		case "mode":
			m, err := strconv.ParseInt(value, 8, 64)
			if err != nil { panic(err) }
			if e.Type != "chunk" { e.Mode = m }
		default:
			panic("unknown lie " + l.lie)
		}
	}
	return l.Compression.WriteTOCAndFooter(w, off, toc, diffHash)
}

type estargzGzip struct {
	*estargz.GzipCompressor
	*estargz.GzipDecompressor
}

func main() {
	if len(os.Args) < 4 || len(os.Args) > 6 {
		fmt.Fprintln(os.Stderr, "usage: mkstargz estargz|zstdchunked IN.tar OUT [PRIORITIZED,...] [LIE]")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[2])
	if err != nil { panic(err) }
	st, _ := f.Stat()
	sr := io.NewSectionReader(f, 0, st.Size())
	var opts []estargz.Option
	opts = append(opts, estargz.WithChunkSize(64<<10))
	if len(os.Args) >= 5 && os.Args[4] != "" {
		opts = append(opts, estargz.WithPrioritizedFiles(strings.Split(os.Args[4], ",")))
	}
	var compression estargz.Compression = estargzGzip{estargz.NewGzipCompressorWithLevel(9), &estargz.GzipDecompressor{}}
	if os.Args[1] == "zstdchunked" {
		compression = zstdChunked{&zstdchunked.Compressor{CompressionLevel: 3}, &zstdchunked.Decompressor{}}
	}
	if len(os.Args) == 6 && os.Args[5] != "" {
		compression = lying{compression, os.Args[5]}
	}
	opts = append(opts, estargz.WithCompression(compression))
	blob, err := estargz.Build(sr, opts...)
	if err != nil { panic(err) }
	out, err := os.Create(os.Args[3])
	if err != nil { panic(err) }
	if _, err := io.Copy(out, blob); err != nil { panic(err) }
	blob.Close()
	out.Close()
	fmt.Printf("%s %s\n", blob.TOCDigest(), blob.DiffID())
}
