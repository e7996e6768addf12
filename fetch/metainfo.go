package fetch

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// DefaultPieceLength is the piece length for release torrents of unknown
// size: 4 MiB. PieceLength picks one for a given size.
const DefaultPieceLength int64 = 4 << 20

// targetPieces is how many pieces PieceLength aims for. Many hosts starting
// at once trade well only if there are many more pieces than hosts (the
// benchmark in docs/BENCHMARKS.md: 256 MiB to 8 hosts went from 2.4x the
// lower bound with 256 pieces to 1.5x with 2048), while 20 bytes of SHA-1
// per piece keep the metainfo near 40 KiB, far below ZooKeeper's 1 MB.
const targetPieces = 2048

// PieceLength is the piece length for a release of size bytes: the power of
// two that gives about targetPieces pieces, between 64 KiB and 64 MiB.
func PieceLength(size int64) int64 {
	l := int64(64 << 10)
	for l < 64<<20 && size/l > targetPieces {
		l *= 2
	}
	return l
}

// MaxMetainfoBytes is the largest metainfo BuildMetainfo produces and the
// bound callers should give ParseMetainfo for metainfo read from ZooKeeper.
// It leaves room under the 1 MB znode limit for the znode's other fields.
const MaxMetainfoBytes = 512 << 10

// Piece lengths outside this range are refused: below one 16 KiB request
// chunk the protocol overhead dominates, above 256 MiB a single bad piece
// costs too much to fetch again.
const (
	minPieceLength int64 = 16 << 10
	maxPieceLength int64 = 256 << 20
)

// BuildMetainfo returns the bencoded single-file metainfo for the file at
// path, advertised under name, and its hex infohash. It has no announce URL
// and sets the private flag, so clients find peers only as they are told.
func BuildMetainfo(path, name string, pieceLength int64) (mi []byte, infohash string, err error) {
	if !validName(name) {
		return nil, "", fmt.Errorf("build metainfo: %w: name %q is not 1 to %d of [A-Za-z0-9._-] starting with no '.'", ErrBadArtifact, name, maxNameLen)
	}
	if err := checkPieceLength(pieceLength); err != nil {
		return nil, "", fmt.Errorf("build metainfo %s: %w", name, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("build metainfo: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("build metainfo: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() <= 0 || fi.Size() > MaxSize {
		return nil, "", fmt.Errorf("build metainfo %s: %w: want a regular file of 1..%d bytes", path, ErrBadArtifact, MaxSize)
	}
	private := true
	info := metainfo.Info{
		Name:        name,
		PieceLength: pieceLength,
		Length:      fi.Size(),
		Private:     &private,
	}
	// Read exactly the size we advertise; a file that changes underneath is
	// caught by the short read.
	info.Pieces, err = metainfo.GeneratePieces(io.LimitReader(f, info.Length), pieceLength, nil)
	if err != nil {
		return nil, "", fmt.Errorf("build metainfo %s: hash pieces: %w", path, err)
	}
	if want := numPieces(info.Length, pieceLength); len(info.Pieces) != 20*want {
		return nil, "", fmt.Errorf("build metainfo %s: file shrank while hashing", path)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, "", fmt.Errorf("build metainfo %s: %w", path, err)
	}
	// No creation date: the same file and name always give the same bytes.
	m := metainfo.MetaInfo{InfoBytes: infoBytes, CreatedBy: "dcroll"}
	mi, err = bencode.Marshal(m)
	if err != nil {
		return nil, "", fmt.Errorf("build metainfo %s: %w", path, err)
	}
	if len(mi) > MaxMetainfoBytes {
		return nil, "", fmt.Errorf("build metainfo %s: %d bytes exceeds %d; use a larger piece length than %d",
			path, len(mi), MaxMetainfoBytes, pieceLength)
	}
	return mi, m.HashInfoBytes().HexString(), nil
}

// ParseMetainfo decodes metainfo as BuildMetainfo makes it: at most maxBytes,
// one file with a safe name, private, and, if expectInfohash is not empty,
// with that (hex) infohash. Any other input is an ErrBadArtifact.
func ParseMetainfo(b []byte, maxBytes int, expectInfohash string) (*metainfo.MetaInfo, error) {
	mi, _, err := parseMetainfo(b, maxBytes, expectInfohash)
	return mi, err
}

func parseMetainfo(b []byte, maxBytes int, expectInfohash string) (*metainfo.MetaInfo, *metainfo.Info, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: metainfo: %s", ErrBadArtifact, fmt.Sprintf(format, args...))
	}
	if len(b) > maxBytes {
		return nil, nil, bad("%d bytes exceeds limit %d", len(b), maxBytes)
	}
	// The decoder recurses and allocates per value: megabytes of nested
	// lists cost it hundreds of megabytes. Look at the shape first.
	if err := checkBencode(b); err != nil {
		return nil, nil, bad("decode: %v", err)
	}
	mi, err := metainfo.Load(bytes.NewReader(b))
	if err != nil {
		return nil, nil, bad("decode: %v", err)
	}
	if len(mi.InfoBytes) == 0 {
		return nil, nil, bad("no info dictionary")
	}
	ih := mi.HashInfoBytes().HexString()
	if expectInfohash != "" && !strings.EqualFold(ih, expectInfohash) {
		return nil, nil, bad("infohash %s, want %s", ih, expectInfohash)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return nil, nil, bad("decode info: %v", err)
	}
	switch {
	case len(info.Files) > 0 || info.HasV2() || len(info.FileTree.Dir) > 0 || info.FileTree.File != (metainfo.FileTreeFile{}):
		return nil, nil, bad("%s: not a single-file v1 torrent", ih)
	case !validName(info.Name):
		return nil, nil, bad("%s: name %q is not 1 to %d of [A-Za-z0-9._-] starting with no '.'", ih, info.Name, maxNameLen)
	case info.NameUtf8 != "" && info.NameUtf8 != info.Name:
		return nil, nil, bad("%s: name.utf-8 %q differs from name %q", ih, info.NameUtf8, info.Name)
	case info.Length <= 0 || info.Length > MaxSize:
		return nil, nil, bad("%s: length %d not in 1..%d", ih, info.Length, MaxSize)
	case info.Private == nil || !*info.Private:
		return nil, nil, bad("%s: private flag not set", ih)
	}
	if err := checkPieceLength(info.PieceLength); err != nil {
		return nil, nil, bad("%s: %v", ih, err)
	}
	if want := numPieces(info.Length, info.PieceLength); len(info.Pieces) != 20*want {
		return nil, nil, bad("%s: %d bytes of piece hashes, want %d for length %d and piece length %d",
			ih, len(info.Pieces), 20*want, info.Length, info.PieceLength)
	}
	return mi, &info, nil
}

func checkPieceLength(n int64) error {
	if n < minPieceLength || n > maxPieceLength || n&(n-1) != 0 {
		return fmt.Errorf("piece length %d is not a power of two in %d..%d", n, minPieceLength, maxPieceLength)
	}
	return nil
}

func numPieces(length, pieceLength int64) int {
	return int((length + pieceLength - 1) / pieceLength)
}
