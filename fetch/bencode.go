package fetch

import (
	"errors"
	"fmt"
)

// Bounds on the shape of a metainfo, checked before it is decoded. One that
// BuildMetainfo makes nests 2 deep and holds about 10 values; the bounds
// leave room for fields other tools add while keeping the decoder, which
// recurses and allocates per value, to a few KiB whatever the input.
const (
	maxBencodeDepth  = 32
	maxBencodeValues = 4096
)

// checkBencode walks b as one bencoded value, without allocating, and
// refuses nesting deeper than maxBencodeDepth, more than maxBencodeValues
// values, malformed tokens and trailing bytes.
func checkBencode(b []byte) error {
	depth, values := 0, 0
	i := 0
	for {
		if i >= len(b) {
			return errors.New("truncated")
		}
		c := b[i]
		switch {
		case c == 'e':
			if depth == 0 {
				return fmt.Errorf("unexpected 'e' at byte %d", i)
			}
			depth--
			i++
		default:
			values++
			if values > maxBencodeValues {
				return fmt.Errorf("more than %d values", maxBencodeValues)
			}
			switch {
			case c == 'l' || c == 'd':
				depth++
				if depth > maxBencodeDepth {
					return fmt.Errorf("nested deeper than %d", maxBencodeDepth)
				}
				i++
				continue // a container is not done until its 'e'
			case c == 'i':
				j := i + 1
				for j < len(b) && b[j] != 'e' {
					if (b[j] < '0' || b[j] > '9') && b[j] != '-' {
						return fmt.Errorf("bad integer at byte %d", i)
					}
					j++
				}
				if j >= len(b) || j-i > 21 {
					return fmt.Errorf("bad integer at byte %d", i)
				}
				i = j + 1
			case c >= '0' && c <= '9':
				n, j := 0, i
				for j < len(b) && b[j] >= '0' && b[j] <= '9' {
					if n > len(b) {
						return fmt.Errorf("string length at byte %d runs past the end", i)
					}
					n = n*10 + int(b[j]-'0')
					j++
				}
				if j >= len(b) || b[j] != ':' {
					return fmt.Errorf("bad string at byte %d", i)
				}
				if n > len(b)-j-1 {
					return fmt.Errorf("string at byte %d runs past the end", i)
				}
				i = j + 1 + n
			default:
				return fmt.Errorf("unexpected byte %q at %d", c, i)
			}
		}
		if depth == 0 {
			if i != len(b) {
				return fmt.Errorf("%d bytes after the value", len(b)-i)
			}
			return nil
		}
	}
}
