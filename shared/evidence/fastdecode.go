package evidence

import (
	"bytes"
	"encoding/base64"
)

// decodeFast decodes the envelopes agents send (one JSON object, every
// value a plain string without escapes but the version, a small integer)
// in about one pass over the bytes, where encoding/json needs four or
// five. It accepts a strict subset of what the general path accepts, and
// for that subset it yields exactly the general path's envelope (before
// validate): ok is false for anything else (escapes, non-ASCII, unknown,
// duplicate or differently cased names, other value types, bad base64,
// unknown kinds, another version, trailing data, ...), and the caller then
// runs the general path, which also produces the error. It never fails by
// itself.
func decodeFast(b []byte) (e *Envelope, ok bool) {
	p := fastParser{b: b}
	p.ws()
	if !p.byte('{') {
		return nil, false
	}
	e = &Envelope{}
	var seen [6]bool
	for first := true; ; first = false {
		p.ws()
		if !first {
			if p.byte('}') {
				break
			}
			if !p.byte(',') {
				return nil, false
			}
			p.ws()
		}
		name, ok := p.str()
		if !ok {
			return nil, false
		}
		p.ws()
		if !p.byte(':') {
			return nil, false
		}
		p.ws()
		i := fieldIndex(name)
		if i < 0 || seen[i] {
			return nil, false
		}
		seen[i] = true
		if i == 0 { // version
			v, ok := p.smallUint()
			if !ok || v != Version {
				return nil, false
			}
			e.Version = v
			continue
		}
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		if i == 1 { // tee
			k, err := ParseKind(string(s))
			if err != nil {
				return nil, false
			}
			e.TEE = k
			continue
		}
		v, ok := decodeB64Plain(s)
		if !ok {
			return nil, false
		}
		switch i {
		case 2:
			e.RuntimeData = v
		case 3:
			e.Report = v
		case 4:
			e.CertTable = v
		case 5:
			e.TPM = v
		}
	}
	p.ws()
	if p.i != len(p.b) || !seen[0] || !seen[1] {
		return nil, false
	}
	return e, true
}

// fieldIndex numbers the envelope's member names in the order decodeFast
// handles them; -1 for any other name.
func fieldIndex(name []byte) int {
	switch string(name) {
	case fieldVersion:
		return 0
	case fieldTEE:
		return 1
	case fieldRuntimeData:
		return 2
	case fieldReport:
		return 3
	case fieldCertTable:
		return 4
	case fieldTPM:
		return 5
	}
	return -1
}

type fastParser struct {
	b []byte
	i int
}

// ws skips JSON whitespace.
func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (p *fastParser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str consumes a string without escapes and returns its content, which may
// still hold bytes JSON forbids in strings: every caller matches the content
// against a fixed set (names, kinds, the base64url alphabet) that has none.
func (p *fastParser) str() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	end := bytes.IndexByte(p.b[p.i:], '"')
	if end < 0 {
		return nil, false
	}
	s := p.b[p.i : p.i+end]
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	p.i += end + 1
	return s, true
}

// smallUint consumes a JSON integer of at most 9 digits without sign,
// fraction or exponent, followed by a delimiter.
func (p *fastParser) smallUint() (int, bool) {
	start, v := p.i, 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		v = v*10 + int(p.b[p.i]-'0')
		p.i++
	}
	n := p.i - start
	if n == 0 || n > 9 || (n > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case ',', '}', ' ', '\t', '\n', '\r':
		default:
			return 0, false
		}
	}
	return v, true
}

// decodeB64Plain decodes s as decodeB64 does, provided every byte of s is
// in the base64url alphabet, so that JSON would have read s unchanged. The
// decoder itself enforces that: it rejects every other byte but '\r' and
// '\n', which it skips, and the length check rejects those.
func decodeB64Plain(s []byte) ([]byte, bool) {
	enc := base64.RawURLEncoding.Strict()
	v := make([]byte, enc.DecodedLen(len(s)))
	n, err := enc.Decode(v, s)
	if err != nil || enc.EncodedLen(n) != len(s) {
		return nil, false
	}
	return v[:n], true
}
