package state

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest service or version name accepted, in bytes.
const MaxNameLen = 128

// ValidName reports whether name can be a service or version name: non-empty,
// at most MaxNameLen bytes, without '/' or NUL, and not "." or "..", so that
// it is always exactly one directory entry.
func ValidName(name string) error {
	if p := nameProblem(name); p != "" {
		return fmt.Errorf("%w %s: %s", ErrInvalidName, quote(name), p)
	}
	return nil
}

// nameProblem says what is wrong with name, or "" when nothing is.
func nameProblem(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > MaxNameLen:
		return fmt.Sprintf("%d bytes, longer than %d", len(name), MaxNameLen)
	case name == "." || name == "..":
		return "not allowed"
	case strings.IndexByte(name, '/') >= 0:
		return "contains '/'"
	case strings.IndexByte(name, 0) >= 0:
		return "contains NUL"
	}
	return ""
}

// quote quotes s for an error message, cutting it short so that a hostile
// megabyte-long name does not end up in a log line.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// CompareVersions orders version strings naturally: runs of ASCII digits
// compare as numbers and everything else byte by byte, so 1.9 < 1.10 < 2.0
// and v2 < v10. It returns -1, 0 or +1, and 0 only when a == b.
func CompareVersions(a, b string) int {
	// The strings are compared as sequences of chunks, each a maximal run of
	// digits or of non-digits. Digit runs compare by value (so "01" and "1"
	// are equivalent here), other runs lexically, and a digit run sorts before
	// a non-digit run. That is a total preorder; breaking its remaining ties
	// with the plain byte order makes it a total order.
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ca, na := chunk(a, i)
		cb, nb := chunk(b, j)
		da, db := isDigit(a[i]), isDigit(b[j])
		var c int
		switch {
		case da && db:
			c = compareNumbers(ca, cb)
		case da:
			c = -1
		case db:
			c = 1
		default:
			c = strings.Compare(ca, cb)
		}
		if c != 0 {
			return c
		}
		i, j = na, nb
	}
	switch {
	case i < len(a):
		return 1
	case j < len(b):
		return -1
	}
	return strings.Compare(a, b)
}

// chunk returns the run of digits or non-digits starting at s[i] and the index
// after it.
func chunk(s string, i int) (string, int) {
	d := isDigit(s[i])
	j := i + 1
	for j < len(s) && isDigit(s[j]) == d {
		j++
	}
	return s[i:j], j
}

// compareNumbers compares two runs of digits by their value, whatever their
// length.
func compareNumbers(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
