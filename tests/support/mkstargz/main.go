// mkstargz: writes an eStargz or zstd:chunked layer from a tar with the estargz Go package
// (Debian: golang-github-containerd-stargz-snapshotter-dev), so tests check lazyfs against
// layers written by a tool that is not lazyfs. Built offline in GOPATH mode:
//   GO111MODULE=off GOPATH=/usr/share/gocode go build -o mkstargz tests/support/mkstargz
// Prints "TOC_DIGEST DIFF_ID". An optional fourth argument, comma-separated tar names, lists
// the files to put first, before a .prefetch.landmark (without it: .no.prefetch.landmark).
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
)

// estargz.Compression is a compressor and a decompressor in one.
type zstdChunked struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

func main() {
	if len(os.Args) != 4 && len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: mkstargz estargz|zstdchunked IN.tar OUT [PRIORITIZED,...]")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[2])
	if err != nil { panic(err) }
	st, _ := f.Stat()
	sr := io.NewSectionReader(f, 0, st.Size())
	var opts []estargz.Option
	opts = append(opts, estargz.WithChunkSize(64<<10))
	if len(os.Args) == 5 && os.Args[4] != "" {
		opts = append(opts, estargz.WithPrioritizedFiles(strings.Split(os.Args[4], ",")))
	}
	if os.Args[1] == "zstdchunked" {
		opts = append(opts, estargz.WithCompression(zstdChunked{&zstdchunked.Compressor{CompressionLevel: 3}, &zstdchunked.Decompressor{}}))
	}
	blob, err := estargz.Build(sr, opts...)
	if err != nil { panic(err) }
	out, err := os.Create(os.Args[3])
	if err != nil { panic(err) }
	if _, err := io.Copy(out, blob); err != nil { panic(err) }
	blob.Close()
	out.Close()
	fmt.Printf("%s %s\n", blob.TOCDigest(), blob.DiffID())
}
