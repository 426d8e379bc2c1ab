// Package secretscan finds secrets in what tests log: released keys, KEKs,
// signing keys, passphrases and whole tokens must never reach a log, a
// console or an audit export. Tests register the secrets they know of
// (Add); Scan looks for each in its raw form and its hex, base64 and
// base64url encodings (also inside longer encoded runs), and for patterns
// that are secret whatever their value: a whole JWT (header, payload and
// signature) and a PEM private key.
//
// It is a test helper: production code does not import it.
package secretscan

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// MinSecretLen is the shortest secret Add accepts: a shorter one would be
// found by chance in ordinary text.
const MinSecretLen = 8

// Patterns that are secrets whatever their value.
var (
	// jwtPattern is a whole compact JWS whose header and payload are JSON
	// objects ("eyJ" is base64url of `{"`), with a signature: a token
	// anyone holding it could present.
	jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{32,}`)
	// pemPrivate is the header of a PEM private key of any kind.
	pemPrivate = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)
)

// Finding is one secret found. It never holds the secret itself.
type Finding struct {
	// Source names what was scanned (a file path, "verifier log", …).
	Source string
	// Secret is the registered name, or the pattern's name.
	Secret string
	// Form is how it appeared: "raw", "hex", "base64", "base64url",
	// "JWT", "PEM private key".
	Form string
	// Offset is the byte offset in the source.
	Offset int
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s (%s) at byte %d", f.Source, f.Secret, f.Form, f.Offset)
}

type form struct {
	secret, name string
	b            []byte
}

// Scanner holds the registered secrets. Its methods are safe for
// concurrent use; the zero value is not usable, call New.
type Scanner struct {
	mu    sync.Mutex
	forms []form
	names map[string]bool
}

// New returns a Scanner with no secrets registered; the patterns always
// apply.
func New() *Scanner { return &Scanner{names: map[string]bool{}} }

// Add registers secret under name, in its raw form and encodings. A secret
// shorter than MinSecretLen bytes is an error.
func (s *Scanner) Add(name string, secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("registering secret %q: %d bytes, want at least %d", name, len(secret), MinSecretLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[name] = true
	add := func(f string, b []byte) {
		if len(b) >= MinSecretLen {
			s.forms = append(s.forms, form{secret: name, name: f, b: b})
		}
	}
	add("raw", bytes.Clone(secret))
	h := hex.EncodeToString(secret)
	add("hex", []byte(h))
	add("hex", []byte(strings.ToUpper(h)))
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{"base64", base64.RawStdEncoding}, {"base64url", base64.RawURLEncoding}} {
		// The secret inside a longer encoded run starts at one of three
		// alignments; only the characters its bytes alone decide are kept.
		for k := range 3 {
			b := enc.e.EncodeToString(append(make([]byte, k), secret...))
			first, last := (8*k+5)/6, 8*(k+len(secret))/6
			add(enc.name, []byte(b[first:last]))
		}
	}
	return nil
}

// Names lists the registered secrets' names, sorted.
func (s *Scanner) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.names))
	for n := range s.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Scan returns every finding in data, which source names.
func (s *Scanner) Scan(source string, data []byte) []Finding {
	s.mu.Lock()
	forms := s.forms
	s.mu.Unlock()
	var out []Finding
	seen := map[string]bool{}
	for _, f := range forms {
		if i := bytes.Index(data, f.b); i >= 0 && !seen[f.secret+"/"+f.name] {
			seen[f.secret+"/"+f.name] = true
			out = append(out, Finding{Source: source, Secret: f.secret, Form: f.name, Offset: i})
		}
	}
	for _, m := range jwtPattern.FindAllIndex(data, -1) {
		out = append(out, Finding{Source: source, Secret: "whole token", Form: "JWT", Offset: m[0]})
	}
	for _, m := range pemPrivate.FindAllIndex(data, -1) {
		out = append(out, Finding{Source: source, Secret: "private key", Form: "PEM private key", Offset: m[0]})
	}
	return out
}

// ScanFile scans the file at path.
func (s *Scanner) ScanFile(path string) ([]Finding, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scanning for secrets: %w", err)
	}
	return s.Scan(path, b), nil
}

// AddFile registers the contents of the file at path (whitespace trimmed)
// and, when that text is itself an encoding (base64, base64url or hex) of
// at least MinSecretLen bytes, the decoded bytes too.
func (s *Scanner) AddFile(name, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("registering secret %q: %w", name, err)
	}
	return s.AddEncoded(name, b)
}

// AddEncoded registers b (whitespace trimmed) and, when it is an encoding
// of at least MinSecretLen bytes, the decoded bytes too.
func (s *Scanner) AddEncoded(name string, b []byte) error {
	b = bytes.TrimSpace(b)
	if err := s.Add(name, b); err != nil {
		return err
	}
	t := string(b)
	for _, dec := range []func(string) ([]byte, error){
		base64.RawURLEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.StdEncoding.DecodeString, hex.DecodeString,
	} {
		if d, err := dec(t); err == nil && len(d) >= MinSecretLen {
			if err := s.Add(name+" (decoded)", d); err != nil {
				return err
			}
		}
	}
	return nil
}
