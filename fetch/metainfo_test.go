package fetch

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// writeRandom writes n random bytes to a new file in dir and returns its path
// and contents.
func writeRandom(t testing.TB, dir, name string, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestBuildMetainfo(t *testing.T) {
	path, data := writeRandom(t, t.TempDir(), "blob", 300<<10+7)
	mi, ih, err := BuildMetainfo(path, "web-1.2.3.tar.gz", 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMetainfo(mi, MaxMetainfoBytes, ih)
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "web-1.2.3.tar.gz" || info.Length != int64(len(data)) || info.NumPieces() != 5 {
		t.Errorf("info: name %q length %d pieces %d", info.Name, info.Length, info.NumPieces())
	}
	if info.Private == nil || !*info.Private || m.Announce != "" || len(m.AnnounceList) != 0 {
		t.Errorf("want private with no trackers: private %v announce %q %v", info.Private, m.Announce, m.AnnounceList)
	}
	// Each piece hash matches the data, so peers can check what they get.
	for i := range info.NumPieces() {
		p := info.Piece(i)
		h := metainfo.HashBytes(data[p.Offset() : p.Offset()+p.Length()])
		if !bytes.Equal(h[:], info.Pieces[20*i:20*i+20]) {
			t.Errorf("piece %d hash mismatch", i)
		}
	}
	// The same file always gives the same metainfo (no creation date).
	mi2, ih2, err := BuildMetainfo(path, "web-1.2.3.tar.gz", 64<<10)
	if err != nil || ih2 != ih || !bytes.Equal(mi, mi2) {
		t.Errorf("rebuild differs: %v %s %s", err, ih, ih2)
	}
}

func TestBuildMetainfoRejects(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeRandom(t, dir, "blob", 1000)
	empty, _ := writeRandom(t, dir, "empty", 0)
	for _, tc := range []struct {
		name, path, as string
		pieceLength    int64
	}{
		{"bad name", path, "../x", DefaultPieceLength},
		{"dot name", path, ".x", DefaultPieceLength},
		{"piece length not power of two", path, "x", 3 << 20},
		{"piece length too small", path, "x", 8 << 10},
		{"empty file", empty, "x", DefaultPieceLength},
		{"directory", dir, "x", DefaultPieceLength},
		{"missing", filepath.Join(dir, "nope"), "x", DefaultPieceLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := BuildMetainfo(tc.path, tc.as, tc.pieceLength); err == nil {
				t.Error("no error")
			}
		})
	}
}

// The default piece length keeps the metainfo of large releases well under
// ZooKeeper's 1 MB znode limit: it is dominated by 20 bytes per piece.
func TestDefaultPieceLengthFitsZnode(t *testing.T) {
	const znodeLimit = 1 << 20
	for _, size := range []int64{4 << 30, MaxSize} {
		hashes := 20 * numPieces(size, DefaultPieceLength)
		t.Logf("%d GiB: %d pieces, %d KiB of hashes", size>>30, hashes/20, hashes>>10)
		if hashes+1024 > MaxMetainfoBytes || MaxMetainfoBytes > znodeLimit/2 {
			t.Errorf("%d bytes: %d bytes of piece hashes, limit %d", size, hashes, MaxMetainfoBytes)
		}
	}
	if 20*numPieces(4<<30, DefaultPieceLength) > znodeLimit/10 {
		t.Error("a 4 GiB release should need under a tenth of a znode")
	}
}

// encodeMetainfo bencodes mi with info as its info dictionary.
func encodeMetainfo(t testing.TB, info any) []byte {
	t.Helper()
	ib, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bencode.Marshal(metainfo.MetaInfo{InfoBytes: ib})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseMetainfo(t *testing.T) {
	path, _ := writeRandom(t, t.TempDir(), "blob", 100<<10)
	good, ih, err := BuildMetainfo(path, "blob", 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	pieces := make([]byte, 20*7)
	valid := func(edit func(*metainfo.Info)) []byte {
		info := metainfo.Info{Name: "blob", PieceLength: 16 << 10, Length: 100 << 10, Pieces: pieces, Private: &yes}
		edit(&info)
		return encodeMetainfo(t, info)
	}
	for _, tc := range []struct {
		name   string
		b      []byte
		max    int
		expect string
		want   string // in the error; "" means no error
	}{
		{"good", good, MaxMetainfoBytes, "", ""},
		{"good with infohash", good, MaxMetainfoBytes, ih, ""},
		{"infohash upper case", good, MaxMetainfoBytes, strings.ToUpper(ih), ""},
		{"hand-built", valid(func(*metainfo.Info) {}), MaxMetainfoBytes, "", ""},
		{"oversize", good, len(good) - 1, "", "exceeds limit"},
		{"infohash mismatch", good, MaxMetainfoBytes, strings.Repeat("0", 40), "infohash"},
		{"empty", nil, MaxMetainfoBytes, "", "decode"},
		{"not bencode", []byte("hello"), MaxMetainfoBytes, "", "decode"},
		{"trailing bytes", append(append([]byte(nil), good...), 'x'), MaxMetainfoBytes, "", "decode"},
		{"list", []byte("le"), MaxMetainfoBytes, "", "decode"},
		{"no info", []byte("d8:announce3:fooe"), MaxMetainfoBytes, "", "no info"},
		{"info not a dict", []byte("d4:info3:fooe"), MaxMetainfoBytes, "", "decode info"},
		{"multi-file", valid(func(i *metainfo.Info) {
			i.Length = 0
			i.Files = []metainfo.FileInfo{{Length: 50 << 10, Path: []string{"a"}}, {Length: 50 << 10, Path: []string{"b"}}}
		}), MaxMetainfoBytes, "", "single-file"},
		{"v2", valid(func(i *metainfo.Info) { i.MetaVersion = 2 }), MaxMetainfoBytes, "", "single-file"},
		{"traversal name", valid(func(i *metainfo.Info) { i.Name = "../../etc/passwd" }), MaxMetainfoBytes, "", "name"},
		{"empty name", valid(func(i *metainfo.Info) { i.Name = "" }), MaxMetainfoBytes, "", "name"},
		{"utf-8 name differs", valid(func(i *metainfo.Info) { i.NameUtf8 = "other" }), MaxMetainfoBytes, "", "name.utf-8"},
		{"zero length", valid(func(i *metainfo.Info) { i.Length = 0 }), MaxMetainfoBytes, "", "length"},
		{"negative length", valid(func(i *metainfo.Info) { i.Length = -1 }), MaxMetainfoBytes, "", "length"},
		{"huge length", valid(func(i *metainfo.Info) { i.Length = MaxSize + 1 }), MaxMetainfoBytes, "", "length"},
		{"not private", valid(func(i *metainfo.Info) { i.Private = &no }), MaxMetainfoBytes, "", "private"},
		{"no private flag", valid(func(i *metainfo.Info) { i.Private = nil }), MaxMetainfoBytes, "", "private"},
		{"zero piece length", valid(func(i *metainfo.Info) { i.PieceLength = 0 }), MaxMetainfoBytes, "", "piece length"},
		{"odd piece length", valid(func(i *metainfo.Info) { i.PieceLength = 20000 }), MaxMetainfoBytes, "", "piece length"},
		{"too few hashes", valid(func(i *metainfo.Info) { i.Pieces = pieces[:20*6] }), MaxMetainfoBytes, "", "piece hashes"},
		{"ragged hashes", valid(func(i *metainfo.Info) { i.Pieces = pieces[:20*7-1] }), MaxMetainfoBytes, "", "piece hashes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mi, err := ParseMetainfo(tc.b, tc.max, tc.expect)
			if tc.want == "" {
				if err != nil || mi == nil {
					t.Fatalf("got %v, %v", mi, err)
				}
				return
			}
			if !errors.Is(err, ErrBadArtifact) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrBadArtifact containing %q", err, tc.want)
			}
			if mi != nil {
				t.Error("result returned with error")
			}
		})
	}
}

func FuzzParseMetainfo(f *testing.F) {
	path, _ := writeRandom(f, f.TempDir(), "blob", 40<<10)
	good, _, err := BuildMetainfo(path, "blob", 16<<10)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("d4:infod6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaa7:privatei1eee"))
	f.Add([]byte("d4:infod5:filesld6:lengthi1e4:pathl1:aeee4:name1:xee"))
	f.Add([]byte("i-0e"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mi, info, err := parseMetainfo(b, 1<<16, "")
		if err != nil {
			if !errors.Is(err, ErrBadArtifact) {
				t.Fatalf("error not ErrBadArtifact: %v", err)
			}
			return
		}
		// Whatever is accepted is safe to use as one file in a directory.
		if mi == nil || info == nil || !validName(info.Name) || info.Length <= 0 || len(info.Files) != 0 {
			t.Fatalf("accepted %+v", info)
		}
	})
}

func TestPieceLength(t *testing.T) {
	for _, tc := range []struct{ size, want int64 }{
		{1, 64 << 10},
		{64 << 20, 64 << 10},
		{256 << 20, 128 << 10},
		{4 << 30, 2 << 20},
		{MaxSize, 32 << 20},
	} {
		got := PieceLength(tc.size)
		if got != tc.want {
			t.Errorf("PieceLength(%d) = %d, want %d", tc.size, got, tc.want)
		}
		if hashes := 20 * numPieces(tc.size, got); hashes > 64<<10 {
			t.Errorf("PieceLength(%d): %d bytes of piece hashes", tc.size, hashes)
		}
	}
}
