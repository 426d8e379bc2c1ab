package termsafe

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// hostile are inputs that try to forge a row or drive a terminal.
var hostile = []string{
	"x\n2026-12-07T17:00:00Z attest: affirming sub=sev-snp:forged",
	"\x1b]0;pwned\x07",
	"\x1b[2J\x1b[H",
	"a\rb",
	"\u009b31m",  // C1 CSI
	"\u202eevil", // right-to-left override
	"\xff\xfe",   // not UTF-8
	"nul\x00byte",
	"del\x7f",
	"\U0001F600 emoji",
}

func TestEscape(t *testing.T) {
	for name, tt := range map[string]struct{ in, want string }{
		"printable ASCII unchanged": {`os-disk_1.2 "quoted" \back\slash ~`, `os-disk_1.2 "quoted" \back\slash ~`},
		"empty":                     {"", ""},
		"newline forges a row":      {"x\n2026 attest: affirming", `x\n2026 attest: affirming`},
		"OSC title":                 {"\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
		"carriage return and tab":   {"a\rb\tc", `a\rb\tc`},
		"DEL and NUL":               {"\x7f\x00", `\x7f\x00`},
		"C1 CSI":                    {"\u009b", `\u009b`},
		"bidi override":             {"\u202e", `\u202e`},
		"look-alike letter":         {"оs-disk", `\u043es-disk`},
		"beyond the BMP":            {"\U0001F600", `\U0001f600`},
		"not UTF-8":                 {"\xff\xc3", `\xff\xc3`},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Escape(tt.in); got != tt.want {
				t.Fatalf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := Safe(tt.in); got != (tt.in == tt.want) {
				t.Fatalf("Safe(%q) = %v", tt.in, got)
			}
		})
	}
}

func TestClip(t *testing.T) {
	for name, tt := range map[string]struct {
		in   string
		max  int
		want string
	}{
		"fits":                        {"os-disk", 7, "os-disk"},
		"escaped fits":                {"a\nb", 4, `a\nb`},
		"cut with marker":             {strings.Repeat("a", 40), 20, "aaaaaa" + Marker},
		"cut never splits an escape":  {"aaaaa\x1bbbbbbbbbbbbbbbbbbbbbbb", 23, "aaaaa\\x1b" + Marker},
		"escape that would not fit":   {"aaaaaaa\x1bbbbbbbbbbbbbbbbbbbbbb", 22, "aaaaaaa" + Marker},
		"max shorter than the marker": {strings.Repeat("a", 40), 5, Marker[:5]},
		"zero":                        {"abc", 0, ""},
		"negative":                    {"abc", -1, ""},
	} {
		t.Run(name, func(t *testing.T) {
			got := Clip(tt.in, tt.max)
			if got != tt.want {
				t.Fatalf("Clip(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
			if len(got) > max(tt.max, 0) {
				t.Fatalf("Clip(%q, %d) is %d bytes", tt.in, tt.max, len(got))
			}
		})
	}
}

func TestStrings(t *testing.T) {
	if Strings(nil, 10) != nil {
		t.Fatal("nil became non-nil")
	}
	got := Strings([]string{"ok", "a\nb", strings.Repeat("x", 50)}, 20)
	want := []string{"ok", `a\nb`, "xxxxxx" + Marker}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Strings = %q, want %q", got, want)
	}
}

func TestError(t *testing.T) {
	if Error(nil) != nil {
		t.Fatal("Error(nil) is not nil")
	}
	inner := &fs.PathError{Op: "open", Path: "\x1b]0;x\x07", Err: fs.ErrNotExist}
	err := Error(inner)
	if got, want := err.Error(), `open \x1b]0;x\x07: file does not exist`; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
		t.Fatal("the wrapped error is not reachable")
	}
}

func TestJSON(t *testing.T) {
	v := map[string]any{"key": "\x1b]0;pwned\x07", "c1": "\u009b", "bidi": "\u202e", "emoji": "\U0001F600", "plain": "ok"}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got := JSON(b)
	if !onlySafeJSONBytes(got) {
		t.Fatalf("JSON left an unsafe byte: %q", got)
	}
	var back map[string]any
	if err := json.Unmarshal(got, &back); err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("JSON changed the value: %v, %v", back, err)
	}
	if !strings.Contains(string(got), `\u009b`) || !strings.Contains(string(got), `\ud83d\ude00`) {
		t.Fatalf("escapes missing: %s", got)
	}
	plain := []byte("{\"a\": 1}\n")
	if out := JSON(plain); &out[0] != &plain[0] {
		t.Fatal("clean JSON was copied")
	}
	// Invalid UTF-8 reads as U+FFFD, as a JSON decoder reads it.
	if got := string(JSON([]byte("\"a\xffb\""))); got != `"a\ufffdb"` {
		t.Fatalf("invalid UTF-8: %s", got)
	}
}

func onlySafeJSONBytes(b []byte) bool {
	for _, c := range b {
		if !printable(c) && c != '\n' && c != '\t' {
			return false
		}
	}
	return true
}

func onlyPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if !printable(s[i]) {
			return false
		}
	}
	return true
}

func TestHostileInputsComeOutPrintable(t *testing.T) {
	for _, s := range hostile {
		if e := Escape(s); !onlyPrintable(e) || strings.ContainsAny(e, "\x1b\n\r") {
			t.Errorf("Escape(%q) = %q", s, e)
		}
	}
}

func TestReplaceAttr(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			opts := &slog.HandlerOptions{ReplaceAttr: ReplaceAttr}
			var h slog.Handler = slog.NewTextHandler(&buf, opts)
			if format == "json" {
				h = slog.NewJSONHandler(&buf, opts)
			}
			log := slog.New(h).WithGroup("api")
			log.Info("request failed\x1b[2J", "key", "\u009b31m\u202e", "err", errors.New("x\n2026 attest: affirming"),
				"reasons", []string{"a\x1b]0;t\x07"}, "n", 7)
			out := strings.TrimSuffix(buf.String(), "\n")
			if !onlyPrintable(out) {
				t.Fatalf("a raw control byte or non-ASCII rune reached the log: %q", out)
			}
			for _, want := range []string{`\x1b[2J`, `\u009b31m`, `x\\n2026`, "7"} {
				if !strings.Contains(out, want) {
					t.Errorf("log line %s lacks %s", out, want)
				}
			}
		})
	}
}

func TestText(t *testing.T) {
	in := "package p\n\tresult := 1 # \x1b]0;t\x07 \u202e\r\n"
	want := "package p\n\tresult := 1 # \\x1b]0;t\\x07 \\u202e\\r\n"
	if got := Text(in); got != want {
		t.Fatalf("Text(%q) = %q, want %q", in, got, want)
	}
	if got := Text("a\tb\nc"); got != "a\tb\nc" {
		t.Fatalf("Text changed %q", got)
	}
}
