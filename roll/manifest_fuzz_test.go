package roll

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/fetch"
)

// FuzzDecodeManifest decodes /staging/<svc> as every agent does, then its
// BitTorrent metainfo: neither panics, what is accepted encodes back to
// the same manifest, and a metainfo is refused only with ErrBadArtifact.
func FuzzDecodeManifest(f *testing.F) {
	dir := f.TempDir()
	art := filepath.Join(dir, "a")
	if err := os.WriteFile(art, []byte(strings.Repeat("release bytes ", 5000)), 0o644); err != nil {
		f.Fatal(err)
	}
	mi, ih, err := fetch.BuildMetainfo(art, "web-1.0", 16<<10)
	if err != nil {
		f.Fatal(err)
	}
	size, sum, _ := fetch.Describe(art)
	good, _ := json.Marshal(Manifest{Version: "1.0", Size: size, SHA256: sum, URLs: []string{"http://h:7434/artifacts/web/1.0"},
		Staged: time.Unix(1e9, 0).UTC(), Infohash: ih, Metainfo: mi, Seeders: []string{"h:6881"}, Unpacked: 3 * size})
	f.Add(good)
	f.Add([]byte(`{"version":"v2","size":10,"sha256":"` + strings.Repeat("a", 64) + `","urls":[],"unpacked":-1}`))
	f.Add([]byte(`{"version":"v2","size":10,"sha256":"` + strings.Repeat("a", 64) + `","infohash":"` + strings.Repeat("b", 40) + `","metainfo":"` + strings.Repeat("bGxs", 1000) + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Manifest
		if err := decode("/dc/staging/web", data, &m); err != nil {
			if !errors.Is(err, ErrBadNode) {
				t.Fatalf("error is not ErrBadNode: %v", err)
			}
			return
		}
		b, err := encode(m)
		if err != nil {
			t.Fatalf("decoded a manifest it cannot encode: %v", err)
		}
		var again Manifest
		if err := decode("/dc/staging/web", b, &again); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if b2, err := encode(again); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the manifest: %v\n%s\n%s", err, b, b2)
		}
		if len(m.Metainfo) > 0 {
			if _, err := fetch.ParseMetainfo(m.Metainfo, fetch.MaxMetainfoBytes, m.Infohash); err != nil && !errors.Is(err, fetch.ErrBadArtifact) {
				t.Fatalf("metainfo: error is not ErrBadArtifact: %v", err)
			}
		}
	})
}
