package termsafe

import (
	"unicode/utf16"
	"unicode/utf8"
)

// JSON rewrites encoded JSON so that it prints safely: every byte outside
// printable ASCII, newline and tab becomes a \uNNNN escape (a surrogate
// pair above U+FFFF; U+FFFD for a byte that is not UTF-8, as a JSON
// decoder reads it). encoding/json already escapes control characters
// inside strings, but it writes C1 controls (U+0080 to U+009F, which some
// terminals obey), bidi overrides and every other rune as raw UTF-8.
//
// For valid JSON without raw carriage returns the result is valid JSON
// that decodes to the same value: such bytes can only be inside strings,
// where a \u escape means the same rune. Any other input still comes out
// as printable ASCII, newline and tab only.
func JSON(b []byte) []byte {
	clean := true
	for _, c := range b {
		if !printable(c) && c != '\n' && c != '\t' {
			clean = false
			break
		}
	}
	if clean {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	for i := 0; i < len(b); {
		c := b[i]
		if printable(c) || c == '\n' || c == '\t' {
			out = append(out, c)
			i++
			continue
		}
		r, n := rune(c), 1
		if c >= utf8.RuneSelf {
			r, n = utf8.DecodeRune(b[i:])
		}
		if r > 0xffff {
			hi, lo := utf16.EncodeRune(r)
			out = appendU(appendU(out, hi), lo)
		} else {
			out = appendU(out, r)
		}
		i += n
	}
	return out
}

func appendU(out []byte, r rune) []byte {
	return appendHex(append(out, `\u`...), uint32(r), 4)
}
