package roll

import (
	"strings"
	"testing"
	"time"
)

// A manifest's web seeds are checked like its other fields: a bad URL is
// refused with an error that names it.
func TestManifestWebSeeds(t *testing.T) {
	base := Manifest{Version: "1.0", Size: 10, SHA256: strings.Repeat("a", 64), Staged: time.Unix(1e9, 0).UTC(),
		Infohash: strings.Repeat("b", 40), Metainfo: []byte("d4:infod6:lengthi10eee")}
	good := base
	good.WebSeeds = []string{"https://artifacts.example/web-2.4.1.tar.gz", "http://10.0.0.1:8080/a?sig=x"}
	if err := good.validate(); err != nil {
		t.Fatalf("good web seeds refused: %v", err)
	}
	for _, c := range []struct {
		seeds []string
		want  string
	}{
		{[]string{"ftp://artifacts.example/a"}, "want an http:// or https:// URL"},
		{[]string{"https:///a"}, "no host"},
		{[]string{"artifacts.example/a"}, "want an http:// or https:// URL"},
		{[]string{"https://artifacts.example/a#x"}, "fragment"},
		{[]string{"https://artifacts.example:99999/a"}, "bad port"},
		{[]string{"http://[::1/a"}, "missing ']'"},
		{[]string{"https://a.example/" + strings.Repeat("x", 3000)}, "more than 2048"},
		{make([]string, MaxWebSeeds+1), "more than 16"},
	} {
		m := base
		m.WebSeeds = c.seeds
		err := m.validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("web seeds %.60q: %v, want an error with %q", c.seeds, err, c.want)
		}
	}
	noTorrent := good
	noTorrent.Infohash, noTorrent.Metainfo = "", nil
	if err := noTorrent.validate(); err == nil || !strings.Contains(err.Error(), "web_seeds") {
		t.Errorf("web seeds without metainfo: %v, want refused", err)
	}
}
