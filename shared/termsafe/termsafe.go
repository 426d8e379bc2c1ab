// Package termsafe makes untrusted text safe to record in a log line or an
// audit record and to print on a terminal.
//
// Text from a request (a key name in a URL, a reason derived from
// evidence, a user agent) can carry newlines that forge what look like
// log or audit rows, and ESC, OSC or C1 sequences that drive the reader's
// terminal. Escape keeps printable ASCII (0x20 to 0x7E) as it is and
// writes everything else as a visible escape, Go-style: \n \r \t, \xNN
// for other control bytes, DEL and bytes that are not UTF-8, \uNNNN or
// \UNNNNNNNN for any other rune (so no bidi override, no C1 control and
// no look-alike letter is ever printed as such). The result is printable
// ASCII only, and printable ASCII passes unchanged: a valid name, a hex
// digest or an error code reads the same escaped or not.
//
// The escaping is for reading, not a reversible encoding: a backslash in
// the input is kept as it is.
package termsafe

import (
	"log/slog"
	"math"
	"unicode/utf8"
)

// Marker ends a Clip result that was cut short.
const Marker = "...[truncated]"

const hexDigits = "0123456789abcdef"

// printable reports whether b is printable ASCII, kept as it is.
func printable(b byte) bool { return b >= 0x20 && b <= 0x7e }

// Safe reports whether s is printable ASCII only, so that Escape(s) == s.
func Safe(s string) bool {
	for i := 0; i < len(s); i++ {
		if !printable(s[i]) {
			return false
		}
	}
	return true
}

// Escape returns s with every byte outside printable ASCII escaped (see
// the package documentation). The result holds only bytes 0x20 to 0x7E.
func Escape(s string) string {
	if Safe(s) {
		return s
	}
	out := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); {
		var n int
		out, n = appendEscaped(out, s[i:])
		i += n
	}
	return string(out)
}

// Text is Escape for a block of text printed as it is meant to be read
// (a policy's source, a multi-line message): newlines and tabs are kept,
// everything else as in Escape.
func Text(s string) string {
	if Safe(s) {
		return s
	}
	out := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); {
		if s[i] == '\n' || s[i] == '\t' {
			out = append(out, s[i])
			i++
			continue
		}
		var n int
		out, n = appendEscaped(out, s[i:])
		i += n
	}
	return string(out)
}

// appendEscaped appends the first rune (or invalid byte) of s, escaped,
// and says how many bytes of s it took.
func appendEscaped(out []byte, s string) ([]byte, int) {
	b := s[0]
	if printable(b) {
		return append(out, b), 1
	}
	switch b {
	case '\n':
		return append(out, `\n`...), 1
	case '\r':
		return append(out, `\r`...), 1
	case '\t':
		return append(out, `\t`...), 1
	}
	if b < utf8.RuneSelf {
		return append(out, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf]), 1
	}
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n == 1 {
		return append(out, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf]), 1
	}
	if r <= 0xffff {
		out = append(out, `\u`...)
		return appendHex(out, uint32(r), 4), n
	}
	out = append(out, `\U`...)
	return appendHex(out, uint32(r), 8), n
}

func appendHex(out []byte, v uint32, digits int) []byte {
	for shift := 4 * (digits - 1); shift >= 0; shift -= 4 {
		out = append(out, hexDigits[(v>>uint(shift))&0xf])
	}
	return out
}

// Clip is Escape with the result bounded to max bytes: when the escaped
// text is longer, it is cut after a whole escape and ends with Marker
// (max shorter than Marker gives a prefix of Marker; max <= 0 gives "").
func Clip(s string, max int) string {
	if max <= 0 {
		return ""
	}
	if len(s) <= max && Safe(s) {
		return s
	}
	limit := max - len(Marker)
	out := make([]byte, 0, min(max, 4*len(s)))
	cut := 0 // the length of out at the last escape boundary within limit
	for i := 0; i < len(s); {
		next, n := appendEscaped(out, s[i:])
		if len(next) > max {
			if limit < 0 {
				return Marker[:max]
			}
			return string(out[:cut]) + Marker
		}
		if len(next) <= limit {
			cut = len(next)
		}
		out, i = next, i+n
	}
	return string(out)
}

// Strings escapes and clips each of ss (max bytes each); nil stays nil.
func Strings(ss []string, max int) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = Clip(s, max)
	}
	return out
}

// Error wraps err so that its message is escaped; errors.Is and errors.As
// still see err.
func Error(err error) error {
	if err == nil {
		return nil
	}
	return escapedError{err}
}

type escapedError struct{ err error }

func (e escapedError) Error() string { return Escape(e.err.Error()) }
func (e escapedError) Unwrap() error { return e.err }

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that escapes every
// string, []string and error value (and the message), so that neither
// handler writes a raw control character: the text handler quotes only
// some values, and the JSON handler writes C1 controls and bidi overrides
// as they are. Other values pass unchanged; log untrusted text as one of
// those kinds.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); !Safe(s) {
			a.Value = slog.StringValue(Escape(s))
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			if v != nil {
				a.Value = slog.StringValue(Escape(v.Error()))
			}
		case []string:
			a.Value = slog.AnyValue(Strings(v, math.MaxInt))
		}
	}
	return a
}
