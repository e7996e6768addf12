package state

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestCompareVersionsOrder(t *testing.T) {
	// Each entry sorts strictly before the next.
	ordered := []string{
		"", "0", "00", "01", "1", "1.0", "1.0.1", "1.2", "1.9", "1.10", "1.10-rc1",
		"1.10a", "2", "2.0", "10", "10.0", "100", "18446744073709551616",
		"99999999999999999999999", "a", "v1", "v2", "v9", "v10", "v10.1", "va",
	}
	for i, a := range ordered {
		for j, b := range ordered {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := CompareVersions(a, b); got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}

// versionGen draws strings that look like versions often enough to exercise
// digit runs, leading zeros and separators, and arbitrary bytes sometimes.
func versionGen() *rapid.Generator[string] {
	return rapid.OneOf(
		rapid.StringMatching(`v?[0-9]{1,3}(\.[0-9]{1,3}){0,3}(-?(rc|beta)[0-9]?)?`),
		rapid.StringOf(rapid.RuneFrom([]rune("0019.-av"))),
		rapid.String(),
	)
}

func TestCompareVersionsIsATotalOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := versionGen().Draw(t, "a")
		b := versionGen().Draw(t, "b")
		c := versionGen().Draw(t, "c")
		ab, ba := CompareVersions(a, b), CompareVersions(b, a)
		if ab != -ba {
			t.Fatalf("not antisymmetric: cmp(a,b)=%d cmp(b,a)=%d", ab, ba)
		}
		if ab < -1 || ab > 1 {
			t.Fatalf("cmp(a,b)=%d, want -1, 0 or 1", ab)
		}
		if (ab == 0) != (a == b) {
			t.Fatalf("cmp(a,b)=%d but a==b is %v", ab, a == b)
		}
		if CompareVersions(a, a) != 0 {
			t.Fatalf("cmp(a,a) != 0")
		}
		bc, ac := CompareVersions(b, c), CompareVersions(a, c)
		if ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("not transitive: a<=b (%d), b<=c (%d), but a>c (%d)", ab, bc, ac)
		}
		if ab >= 0 && bc >= 0 && ac < 0 {
			t.Fatalf("not transitive: a>=b (%d), b>=c (%d), but a<c (%d)", ab, bc, ac)
		}
	})
}

// TestCompareVersionsSortsConsistently sorts a handful of versions and checks
// every pair, not only neighbours: with an intransitive order some pair would
// come out of the sort in the wrong order.
func TestCompareVersionsSortsConsistently(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		vs := rapid.SliceOfN(versionGen(), 2, 10).Draw(t, "versions")
		slices.SortFunc(vs, CompareVersions)
		for i := range vs {
			for j := i + 1; j < len(vs); j++ {
				if CompareVersions(vs[i], vs[j]) > 0 {
					t.Fatalf("after sorting, %q comes before %q but compares greater: %q", vs[i], vs[j], vs)
				}
			}
		}
	})
}

func TestCompareVersionsIsNumeric(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		x := rapid.Uint64().Draw(t, "x")
		y := rapid.Uint64().Draw(t, "y")
		prefix := rapid.SampledFrom([]string{"", "v", "1.", "release-2."}).Draw(t, "prefix")
		zeros := strings.Repeat("0", rapid.IntRange(0, 3).Draw(t, "zeros"))
		want := 0
		switch {
		case x < y:
			want = -1
		case x > y:
			want = 1
		}
		a := fmt.Sprintf("%s%s%d.0", prefix, zeros, x)
		b := fmt.Sprintf("%s%d.0", prefix, y)
		if want == 0 {
			return // only equal in value; the tie-break is checked elsewhere
		}
		if got := CompareVersions(a, b); got != want {
			t.Fatalf("CompareVersions(%q, %q) = %d, want %d", a, b, got, want)
		}
	})
}

func TestMostPopularProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		fleet := rapid.MapOf(versionGen(), rapid.IntRange(0, 4)).Draw(t, "fleet")
		s := &Service{Fleet: fleet}
		got, ok := s.MostPopular()

		// The model: sort by count, highest first, then newest first; the
		// first one wins if anybody serves it.
		versions := slices.Collect(maps.Keys(fleet))
		slices.SortFunc(versions, func(a, b string) int {
			if fleet[a] != fleet[b] {
				return fleet[b] - fleet[a]
			}
			return CompareVersions(b, a)
		})
		if len(versions) == 0 || fleet[versions[0]] == 0 {
			if ok || got != "" {
				t.Fatalf("MostPopular() = %q, %v for a fleet nobody serves", got, ok)
			}
			return
		}
		if !ok || got != versions[0] {
			t.Fatalf("MostPopular() = %q, %v; want %q (order %q)", got, ok, versions[0], versions)
		}
		for v, n := range fleet {
			if n > fleet[got] || (n == fleet[got] && CompareVersions(v, got) > 0) {
				t.Fatalf("%q (%d hosts) beats the answer %q (%d hosts)", v, n, got, fleet[got])
			}
		}
	})
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"web", "1.10", "v2-rc1", "...", ".hidden", "with space", strings.Repeat("x", MaxNameLen)} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "a/b", "/", "a\x00", strings.Repeat("x", MaxNameLen+1)} {
		err := ValidName(name)
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	if err := ValidName(strings.Repeat("x", 10000)); len(err.Error()) > 200 {
		t.Errorf("error for a long name is %d bytes long", len(err.Error()))
	}
}
