package termsafe

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzEscape: the output is printable ASCII only (no control byte, no
// ESC, nothing from 0x7F up), printable ASCII round-trips unchanged, and
// Clip stays within its bound as a prefix of the escaped text.
func FuzzEscape(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, 24)
	}
	f.Add("os-disk", 7)
	f.Add(strings.Repeat("é", 30), 17)
	f.Fuzz(func(t *testing.T, s string, max int) {
		e := Escape(s)
		if !onlyPrintable(e) {
			t.Fatalf("Escape(%q) = %q holds an unprintable byte", s, e)
		}
		if Safe(s) != (e == s) {
			t.Fatalf("Safe(%q) = %v but Escape gives %q", s, Safe(s), e)
		}
		if onlyPrintable(s) && e != s {
			t.Fatalf("printable ASCII %q changed to %q", s, e)
		}
		for _, c := range []byte(Text(s)) {
			if !printable(c) && c != '\n' && c != '\t' {
				t.Fatalf("Text(%q) holds %q", s, c)
			}
		}
		max %= 1 << 12
		c := Clip(s, max)
		if len(c) > max && !(max <= 0 && c == "") {
			t.Fatalf("Clip(%q, %d) = %q is too long", s, max, c)
		}
		if !onlyPrintable(c) {
			t.Fatalf("Clip(%q, %d) = %q holds an unprintable byte", s, max, c)
		}
		switch {
		case max > 0 && len(e) <= max:
			if c != e {
				t.Fatalf("Clip(%q, %d) = %q, want all of %q", s, max, c, e)
			}
		case max >= len(Marker):
			body, ok := strings.CutSuffix(c, Marker)
			if !ok || !strings.HasPrefix(e, body) {
				t.Fatalf("Clip(%q, %d) = %q: not a prefix of %q with the marker", s, max, c, e)
			}
		}
	})
}

// FuzzJSON: the output holds only printable ASCII, newline and tab, and
// valid JSON (without a raw carriage return) decodes to the same value.
func FuzzJSON(f *testing.F) {
	for _, s := range hostile {
		b, _ := json.Marshal(map[string]string{"k": s})
		f.Add(b)
	}
	f.Add([]byte("{\"a\": [1, \"\xff\", \"\u202e\"]}\n"))
	f.Add([]byte("\x1b[2J"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := JSON(b)
		if !onlySafeJSONBytes(out) {
			t.Fatalf("JSON(%q) = %q holds an unsafe byte", b, out)
		}
		if onlySafeJSONBytes(b) && !bytes.Equal(out, b) {
			t.Fatalf("clean %q changed to %q", b, out)
		}
		var in any
		if bytes.IndexByte(b, '\r') >= 0 || json.Unmarshal(b, &in) != nil {
			return
		}
		var back any
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("JSON(%q) = %q no longer decodes: %v", b, out, err)
		}
		if !reflect.DeepEqual(in, back) {
			t.Fatalf("JSON(%q) = %q decodes to %#v, want %#v", b, out, back, in)
		}
	})
}
