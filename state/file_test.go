package state

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sampleFile() *File {
	t0 := time.Date(2024, 5, 1, 12, 30, 0, 123456789, time.UTC)
	return &File{
		Services: map[string]*Service{
			"web": {Running: "1.10", Fleet: map[string]int{"1.9": 3, "1.10": 40}, Seen: t0},
			"db":  {Running: "v2"},
			"new": {Fleet: map[string]int{"0.1": 0}},
		},
		Switch:  &Switch{Service: "web", From: "1.9", To: "1.10", Started: t0.Add(-time.Minute)},
		Updated: t0,
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "dcroll")
	want := sampleFile()
	if err := Save(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load after Save:\n got %+v\nwant %+v", got, want)
	}

	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("state.json mode %v, want 0644", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o755&^currentUmask(t) {
		t.Errorf("state dir mode %v, want 0755 less the umask", di.Mode().Perm())
	}
	assertNoTemps(t, dir)
}

func currentUmask(t *testing.T) os.FileMode {
	t.Helper()
	probe := filepath.Join(t.TempDir(), "probe")
	if err := os.Mkdir(probe, 0o777); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(probe)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ fi.Mode().Perm()
}

// assertNoTemps checks that only state.json is left in dir.
func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != FileName {
			t.Errorf("%s left behind in %s", e.Name(), dir)
		}
	}
}

func TestSaveNilServices(t *testing.T) {
	dir := t.TempDir()
	if err := Save(dir, &File{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"services": {}`) {
		t.Errorf("nil services written as:\n%s", data)
	}
	f, err := Load(dir)
	if err != nil || f.Services == nil {
		t.Errorf("Load = %+v, %v; want a usable map", f, err)
	}
}

// TestSaveStampsTheTime checks that a File saved without a time is written
// with the time of the Save, not as 0001-01-01T00:00:00Z.
func TestSaveStampsTheTime(t *testing.T) {
	dir := t.TempDir()
	f := &File{Services: map[string]*Service{"web": {Running: "1"}}}
	before := time.Now().UTC()
	if err := Save(dir, f); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UTC()
	if !f.Updated.IsZero() {
		t.Errorf("Save changed the caller's File: Updated = %v", f.Updated)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Updated.Before(before) || got.Updated.After(after) {
		t.Errorf("updated = %v, want the time of the Save, between %v and %v", got.Updated, before, after)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "0001-01-01") {
		t.Errorf("state.json holds a zero time:\n%s", data)
	}
}

func TestLoadMissingIsEmpty(t *testing.T) {
	f, err := Load(filepath.Join(t.TempDir(), "nothing-here"))
	if err != nil {
		t.Fatal(err)
	}
	if f == nil || f.Services == nil || len(f.Services) != 0 || f.Switch != nil || !f.Updated.IsZero() {
		t.Errorf("Load of a missing file = %+v, want an empty File with a usable map", f)
	}
	f.Services["web"] = &Service{Running: "1"} // must not panic
}

func TestLoadMalformedNamesThePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte(`{"services": {"web": {"fleet": {"1.0": -2}}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(dir)
	if f != nil {
		t.Errorf("Load returned %+v with its error", f)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("Load error %v, want ErrMalformed", err)
	}
	for _, part := range []string{path, `"web"`, `"1.0"`, "-2", "negative"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %s", err, part)
		}
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory in place of the file cannot be read.
	if err := os.Mkdir(filepath.Join(dir, FileName), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Errorf("Load of a directory: error %v, want one naming the path", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	dir := t.TempDir()
	data := []byte(`{"services": {}, "x": "` + strings.Repeat("a", MaxFileSize) + `"}`)
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Load of %d bytes: error %v, want ErrTooLarge naming the path", len(data), err)
	}
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("9", MaxNameLen+1)
	tests := []struct {
		name, data string
		want       error
		mention    string
	}{
		{"empty", ``, ErrMalformed, "unexpected end"},
		{"truncated", `{"services": {"web": {"running": "1.0"`, ErrMalformed, "unexpected end"},
		{"not json", `services = web`, ErrMalformed, "invalid character"},
		{"trailing garbage", `{"services": {}} {}`, ErrMalformed, "invalid character"},
		{"null", `null`, ErrMalformed, "null"},
		{"array", `[]`, ErrMalformed, "cannot unmarshal"},
		{"string", `"state"`, ErrMalformed, "cannot unmarshal"},
		{"services not an object", `{"services": []}`, ErrMalformed, "cannot unmarshal"},
		{"service null", `{"services": {"web": null}}`, ErrMalformed, `"web": null`},
		{"service a number", `{"services": {"web": 3}}`, ErrMalformed, "cannot unmarshal"},
		{"running a number", `{"services": {"web": {"running": 3}}}`, ErrMalformed, "cannot unmarshal"},
		{"count a string", `{"services": {"web": {"fleet": {"1.0": "3"}}}}`, ErrMalformed, "cannot unmarshal"},
		{"count a fraction", `{"services": {"web": {"fleet": {"1.0": 1.5}}}}`, ErrMalformed, "cannot unmarshal"},
		{"count overflows", `{"services": {"web": {"fleet": {"1.0": 99999999999999999999}}}}`, ErrMalformed, "cannot unmarshal"},
		{"negative count", `{"services": {"web": {"fleet": {"1.0": -1}}}}`, ErrMalformed, "negative"},
		{"bad time", `{"services": {}, "updated": "yesterday"}`, ErrMalformed, "yesterday"},
		{"time past 9999 in UTC", `{"services": {}, "updated": "9999-12-31T23:59:59-01:00"}`, ErrMalformed, "year 10000"},
		{"time before 0 in UTC", `{"services": {"web": {"seen": "0000-01-01T00:00:00+01:00"}}}`, ErrMalformed, "seen: year -1"},
		{"empty service name", `{"services": {"": {}}}`, ErrMalformed, "empty"},
		{"service name with slash", `{"services": {"a/b": {}}}`, ErrMalformed, "'/'"},
		{"service name dotdot", `{"services": {"..": {}}}`, ErrMalformed, `".."`},
		{"service name dot", `{"services": {".": {}}}`, ErrMalformed, "not allowed"},
		{"service name NUL", `{"services": {"a\u0000b": {}}}`, ErrMalformed, "NUL"},
		{"service name long", `{"services": {"` + long + `": {}}}`, ErrMalformed, "longer than 128"},
		{"running with slash", `{"services": {"web": {"running": "../../etc"}}}`, ErrMalformed, "running version"},
		{"running dotdot", `{"services": {"web": {"running": ".."}}}`, ErrMalformed, "running version"},
		{"fleet version empty", `{"services": {"web": {"fleet": {"": 1}}}}`, ErrMalformed, "fleet version"},
		{"fleet version long", `{"services": {"web": {"fleet": {"` + long + `": 1}}}}`, ErrMalformed, "fleet version"},
		{"switch not an object", `{"services": {}, "switch": "web"}`, ErrMalformed, "cannot unmarshal"},
		{"switch without service", `{"services": {}, "switch": {"to": "2"}}`, ErrMalformed, "switch: service"},
		{"switch without target", `{"services": {}, "switch": {"service": "web"}}`, ErrMalformed, "switch: to"},
		{"switch from bad", `{"services": {}, "switch": {"service": "web", "from": "a/b", "to": "2"}}`, ErrMalformed, "switch: from"},
		{"oversized", `{"services": {}, "pad": "` + strings.Repeat(" ", MaxFileSize) + `"}`, ErrTooLarge, "1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Decode([]byte(tt.data))
			if f != nil {
				t.Errorf("Decode returned %+v with its error", f)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			if len(err.Error()) > 400 {
				t.Errorf("error of %d bytes is too long for a log line: %.100s...", len(err.Error()), err)
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name, data string
		want       *File
	}{
		{"empty object", `{}`, &File{Services: map[string]*Service{}}},
		{"empty fleet", `{"services": {"web": {"fleet": {}}}}`, &File{Services: map[string]*Service{"web": {}}}},
		{"unknown fields from a newer agent", `{"services": {"web": {"pinned": true}}, "epoch": 7}`,
			&File{Services: map[string]*Service{"web": {}}}},
		{"zone converted to UTC", `{"services": {}, "updated": "2024-05-01T14:00:00+02:00"}`,
			&File{Services: map[string]*Service{}, Updated: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}},
		{"odd but valid names", `{"services": {"...": {"running": ".hidden", "fleet": {"1 0": 0}}}}`,
			&File{Services: map[string]*Service{"...": {Running: ".hidden", Fleet: map[string]int{"1 0": 0}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSaveRefusesWhatLoadRefuses(t *testing.T) {
	tests := []struct {
		name string
		f    *File
		want error
	}{
		{"nil", nil, ErrMalformed},
		{"bad service name", &File{Services: map[string]*Service{"a/b": {}}}, ErrMalformed},
		{"nil service", &File{Services: map[string]*Service{"web": nil}}, ErrMalformed},
		{"negative count", &File{Services: map[string]*Service{"web": {Fleet: map[string]int{"1": -1}}}}, ErrMalformed},
		{"bad switch", &File{Switch: &Switch{Service: "web"}}, ErrMalformed},
		{"too large", func() *File {
			f := &File{Services: map[string]*Service{}}
			for i := range 20000 {
				f.Services[strings.Repeat("s", 60)+strconv.Itoa(i)] = &Service{Running: "1"}
			}
			return f
		}(), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Save(dir, tt.f)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Save error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
				t.Errorf("error %q does not name the file", err)
			}
			if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused Save left a file behind: %v", err)
			}
		})
	}
}

func TestSaveReplacesAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	if err := Save(dir, sampleFile()); err != nil {
		t.Fatal(err)
	}
	// What a writer killed between creating its temp file and renaming it
	// leaves behind; the next Save removes it. Similar names are not ours.
	for _, name := range []string{".state.json123456", ".state.json98"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(`{"servi`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keep := []string{".state.json.bak", "notes.txt"}
	for _, name := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	next := &File{Services: map[string]*Service{"web": {Running: "2.0"}}, Updated: time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC)}
	if err := Save(dir, next); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, next) {
		t.Errorf("Load = %+v, want %+v", got, next)
	}
	for _, name := range keep {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Errorf("Save removed a file that is not its own: %v", err)
		}
	}
	assertNoTemps(t, dir)
}

func TestSaveIsReadable(t *testing.T) {
	dir := t.TempDir()
	if err := Save(dir, sampleFile()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\n  \"services\": {") || !strings.HasSuffix(string(data), "}\n") {
		t.Errorf("state.json is not indented JSON ending in a newline:\n%s", data)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"services", "switch", "updated"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("state.json has no %q key: %s", key, data)
		}
	}
}

func TestMostPopular(t *testing.T) {
	tests := []struct {
		name  string
		s     *Service
		want  string
		found bool
	}{
		{"nil service", nil, "", false},
		{"no fleet", &Service{Running: "1.0"}, "", false},
		{"only zero counts", &Service{Fleet: map[string]int{"1.0": 0, "2.0": 0}}, "", false},
		{"clear winner", &Service{Fleet: map[string]int{"1.0": 5, "2.0": 3, "3.0": 0}}, "1.0", true},
		{"tie goes to newest", &Service{Fleet: map[string]int{"1.9": 4, "1.10": 4, "1.2": 4}}, "1.10", true},
		{"tie natural order", &Service{Fleet: map[string]int{"v10": 1, "v9": 1}}, "v10", true},
		{"one host", &Service{Fleet: map[string]int{"0.1": 1}}, "0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := tt.s.MostPopular()
			if got != tt.want || found != tt.found {
				t.Errorf("MostPopular() = %q, %v; want %q, %v", got, found, tt.want, tt.found)
			}
		})
	}
}

// FuzzDecode checks that Decode never panics, and that anything it accepts
// survives what Save does to it: encoding gives bytes that decode to the
// same value.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		``,
		`{}`,
		`null`,
		`[]`,
		`{"services": null}`,
		`{"services": {"web": null}}`,
		`{"services": {"web": {}}}`,
		`{"services": {"web": {"running": "1.0", "fleet": {"1.0": 3, "0.9": 0}, "seen": "2024-05-01T12:00:00Z"}}, "updated": "2024-05-01T12:00:00.5+02:00"}`,
		`{"services": {"web": {"fleet": {"1.0": -1}}}}`,
		`{"services": {"web": {"fleet": {}}}}`,
		`{"services": {}, "switch": {"service": "web", "from": "", "to": "2", "started": "0001-01-01T00:00:00Z"}}`,
		`{"services": {"a/b": {}}}`,
		`{"services": {"..": {"running": "."}}}`,
		`{"services": {"w\u0000": {}}}`,
		`{"Services": {"web": {"Running": "1"}}, "SWITCH": null}`,
		`{"services": {"web": {"running": "\ud800"}}}`,
		"{\"services\": {\"\xff\": {}}}",
		`{"services": {"web": {"fleet": {"1": 1e2}}}}`,
		`{"services": {}, "updated": "9999-12-31T23:59:59.999999999-23:59"}`,
		`{"services": {}, "switch": {"service": "a", "to": "b", "started": "0000-01-01T00:30:00+01:00"}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	sf, err := encode(sampleFile())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sf)

	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data)
		if err != nil {
			if got != nil {
				t.Fatalf("Decode returned %+v with error %v", got, err)
			}
			return
		}
		enc, err := encode(got)
		if err != nil {
			t.Fatalf("Decode accepted %q but encoding it failed: %v", data, err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode accepted %q but not its encoding %q: %v", data, enc, err)
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("round trip changed the value:\n input %q\n first %+v\nsecond %+v", data, got, again)
		}
	})
}
