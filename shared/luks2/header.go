package luks2

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Magic strings of the primary and secondary header copies.
const (
	magicPrimary   = "LUKS\xba\xbe"
	magicSecondary = "SKUL\xba\xbe"
)

// Offsets in the binary header (struct luks2_hdr_disk, big endian).
const (
	offVersion   = 6
	offHdrSize   = 8
	offSeqID     = 16
	offLabel     = 24
	offCsumAlg   = 72
	offSalt      = 104
	offUUID      = 168
	offSubsystem = 208
	offHdrOffset = 256
	csumAlgSize  = 32
	uuidSize     = 40
)

// metadata is the JSON area. The same types serve writing (field order
// follows cryptsetup's) and reading untrusted headers (every value is checked
// before use).
type metadata struct {
	Keyslots map[string]keyslotJSON     `json:"keyslots"`
	Tokens   map[string]json.RawMessage `json:"tokens"`
	Segments map[string]segmentJSON     `json:"segments"`
	Digests  map[string]digestJSON      `json:"digests"`
	Config   configJSON                 `json:"config"`
}

type keyslotJSON struct {
	Type     string   `json:"type"`
	KeySize  int      `json:"key_size"`
	AF       afJSON   `json:"af"`
	Area     areaJSON `json:"area"`
	KDF      kdfJSON  `json:"kdf"`
	Priority *int     `json:"priority,omitempty"`
}

type afJSON struct {
	Type    string `json:"type"`
	Stripes int    `json:"stripes"`
	Hash    string `json:"hash"`
}

type areaJSON struct {
	Type       string `json:"type"`
	Offset     string `json:"offset"`
	Size       string `json:"size"`
	Encryption string `json:"encryption"`
	KeySize    int    `json:"key_size"`
}

type kdfJSON struct {
	Type       string `json:"type"`
	Hash       string `json:"hash,omitempty"`
	Iterations uint64 `json:"iterations,omitempty"`
	Time       uint64 `json:"time,omitempty"`
	Memory     uint64 `json:"memory,omitempty"`
	CPUs       uint64 `json:"cpus,omitempty"`
	Salt       string `json:"salt"`
}

type segmentJSON struct {
	Type       string          `json:"type"`
	Offset     string          `json:"offset"`
	Size       string          `json:"size"`
	IVTweak    string          `json:"iv_tweak"`
	Encryption string          `json:"encryption"`
	SectorSize int             `json:"sector_size"`
	Integrity  json.RawMessage `json:"integrity,omitempty"`
	Flags      []string        `json:"flags,omitempty"`
}

type digestJSON struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations uint64   `json:"iterations"`
	Salt       string   `json:"salt"`
	Digest     string   `json:"digest"`
}

type configJSON struct {
	JSONSize     string            `json:"json_size"`
	KeyslotsSize string            `json:"keyslots_size"`
	Flags        []string          `json:"flags,omitempty"`
	Requirements *requirementsJSON `json:"requirements,omitempty"`
}

type requirementsJSON struct {
	Mandatory []string `json:"mandatory"`
}

// headerCopy is one verified header copy.
type headerCopy struct {
	hdrSize   int64
	seqID     uint64
	label     string
	subsystem string
	uuid      string
	meta      metadata
}

// encodeCopy builds one header copy (binary header, JSON area, checksum).
func encodeCopy(hdrSize int64, magic string, seqID uint64, label, subsystem, uuid string, salt []byte, offset int64, js []byte) []byte {
	b := make([]byte, hdrSize)
	copy(b, magic)
	binary.BigEndian.PutUint16(b[offVersion:], 2)
	binary.BigEndian.PutUint64(b[offHdrSize:], uint64(hdrSize))
	binary.BigEndian.PutUint64(b[offSeqID:], seqID)
	copy(b[offLabel:offLabel+labelSize-1], label)
	copy(b[offCsumAlg:offCsumAlg+csumAlgSize-1], "sha256")
	copy(b[offSalt:offSalt+headerSaltSize], salt)
	copy(b[offUUID:offUUID+uuidSize-1], uuid)
	copy(b[offSubsystem:offSubsystem+labelSize-1], subsystem)
	binary.BigEndian.PutUint64(b[offHdrOffset:], uint64(offset))
	copy(b[binHeaderSize:], js)
	sum := sha256.Sum256(b)
	copy(b[csumOffset:], sum[:])
	return b
}

// secondaryOffsets are where cryptsetup looks for the secondary copy when the
// primary cannot tell its size: every legal header size.
func secondaryOffsets() []int64 {
	var offs []int64
	for s := int64(defaultHeaderSize); s <= maxHeaderSize; s *= 2 {
		offs = append(offs, s)
	}
	return offs
}

func validHeaderSize(s uint64) bool {
	return s >= defaultHeaderSize && s <= maxHeaderSize && s&(s-1) == 0
}

// copyResult is what was found at one header offset.
type copyResult struct {
	hdr     *headerCopy // non-nil when the copy verified
	present bool        // a LUKS2 magic and version were there
	reason  error       // why a present copy did not verify
}

// readCopy reads and verifies the header copy at off. The error is for I/O
// failures only; corruption is reported in the result.
func readCopy(r io.ReaderAt, off int64, magic string) (copyResult, error) {
	bin := make([]byte, binHeaderSize)
	if n, err := r.ReadAt(bin, off); n < len(bin) {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return copyResult{}, nil // device too small to hold a header here
		}
		return copyResult{}, fmt.Errorf("reading LUKS2 header at %d: %w", off, err)
	}
	if string(bin[:len(magic)]) != magic || binary.BigEndian.Uint16(bin[offVersion:]) != 2 {
		return copyResult{}, nil
	}
	bad := func(format string, a ...any) (copyResult, error) {
		return copyResult{present: true, reason: fmt.Errorf(format, a...)}, nil
	}
	hdrSize := binary.BigEndian.Uint64(bin[offHdrSize:])
	if !validHeaderSize(hdrSize) {
		return bad("header size %d is not a power of two in [16 KiB, 4 MiB]", hdrSize)
	}
	if got := binary.BigEndian.Uint64(bin[offHdrOffset:]); got != uint64(off) {
		return bad("header at %d claims offset %d", off, got)
	}
	if alg := cString(bin[offCsumAlg : offCsumAlg+csumAlgSize]); alg != "sha256" {
		return bad("checksum algorithm %q is not sha256", alg)
	}
	full := make([]byte, hdrSize)
	copy(full, bin)
	if n, err := r.ReadAt(full[binHeaderSize:], off+binHeaderSize); n < len(full)-binHeaderSize {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return bad("header truncated")
		}
		return copyResult{}, fmt.Errorf("reading LUKS2 JSON area at %d: %w", off, err)
	}
	var stored [sha256.Size]byte
	copy(stored[:], full[csumOffset:])
	clear(full[csumOffset : csumOffset+64])
	sum := sha256.Sum256(full)
	if subtle.ConstantTimeCompare(sum[:], stored[:]) != 1 {
		return bad("header checksum mismatch")
	}
	area := full[binHeaderSize:]
	end := bytes.IndexByte(area, 0)
	if end < 0 {
		return bad("JSON area is not NUL-terminated")
	}
	var meta metadata
	if err := json.Unmarshal(area[:end], &meta); err != nil {
		return bad("decoding JSON metadata: %v", err)
	}
	if err := meta.validate(int64(hdrSize)); err != nil {
		return bad("validating JSON metadata: %v", err)
	}
	return copyResult{present: true, hdr: &headerCopy{
		hdrSize:   int64(hdrSize),
		seqID:     binary.BigEndian.Uint64(bin[offSeqID:]),
		label:     cString(bin[offLabel : offLabel+labelSize]),
		subsystem: cString(bin[offSubsystem : offSubsystem+labelSize]),
		uuid:      cString(bin[offUUID : offUUID+uuidSize]),
		meta:      meta,
	}}, nil
}

// readHeader returns the verified header copy to use: the one with the higher
// sequence id when both verify (the primary on a tie), else whichever verifies.
func readHeader(r io.ReaderAt) (*headerCopy, error) {
	p, err := readCopy(r, 0, magicPrimary)
	if err != nil {
		return nil, err
	}
	offs := secondaryOffsets()
	if p.hdr != nil {
		offs = []int64{p.hdr.hdrSize}
	}
	var s copyResult
	for _, off := range offs {
		c, err := readCopy(r, off, magicSecondary)
		if err != nil {
			return nil, err
		}
		if c.present {
			s = c
			if c.hdr != nil {
				break
			}
		}
	}
	switch {
	case p.hdr != nil && s.hdr != nil:
		if s.hdr.seqID > p.hdr.seqID {
			return s.hdr, nil
		}
		return p.hdr, nil
	case p.hdr != nil:
		return p.hdr, nil
	case s.hdr != nil:
		return s.hdr, nil
	case !p.present && !s.present:
		return nil, ErrNotLUKS2
	}
	return nil, fmt.Errorf("%w: primary: %v; secondary: %v", ErrCorruptHeader, reasonOf(p), reasonOf(s))
}

func reasonOf(c copyResult) error {
	if !c.present {
		return errors.New("not found")
	}
	return c.reason
}

// validate checks the structure cryptsetup requires of the JSON area; values
// a keyslot needs are checked again where they are used.
func (m *metadata) validate(hdrSize int64) error {
	if m.Keyslots == nil || m.Tokens == nil || m.Segments == nil || m.Digests == nil {
		return errors.New("keyslots, tokens, segments or digests section missing")
	}
	jsonSize, err := parseUint(m.Config.JSONSize)
	if err != nil {
		return fmt.Errorf("config json_size: %w", err)
	}
	if jsonSize != uint64(hdrSize-binHeaderSize) {
		return fmt.Errorf("config json_size %d does not match header size %d", jsonSize, hdrSize)
	}
	if _, err := parseUint(m.Config.KeyslotsSize); err != nil {
		return fmt.Errorf("config keyslots_size: %w", err)
	}
	for id := range m.Keyslots {
		if n, err := parseUint(id); err != nil || n > maxJSONKeyslotID {
			return fmt.Errorf("keyslot id %q is not in 0..%d", id, maxJSONKeyslotID)
		}
	}
	if err := numericKeys("token", m.Tokens); err != nil {
		return err
	}
	if err := numericKeys("segment", m.Segments); err != nil {
		return err
	}
	if err := numericKeys("digest", m.Digests); err != nil {
		return err
	}
	for id, s := range m.Segments {
		if s.Type == "" {
			return fmt.Errorf("segment %s has no type", id)
		}
		if _, err := parseUint(s.Offset); err != nil {
			return fmt.Errorf("segment %s offset: %w", id, err)
		}
		if s.Size != "dynamic" {
			if _, err := parseUint(s.Size); err != nil {
				return fmt.Errorf("segment %s size: %w", id, err)
			}
		}
	}
	for id, d := range m.Digests {
		for _, k := range d.Keyslots {
			if _, ok := m.Keyslots[k]; !ok {
				return fmt.Errorf("digest %s names missing keyslot %q", id, k)
			}
		}
		for _, s := range d.Segments {
			if _, ok := m.Segments[s]; !ok {
				return fmt.Errorf("digest %s names missing segment %q", id, s)
			}
		}
	}
	return nil
}

func numericKeys[V any](section string, m map[string]V) error {
	for id := range m {
		if _, err := parseUint(id); err != nil {
			return fmt.Errorf("%s id %q is not a number", section, id)
		}
	}
	return nil
}

// parseUint parses the decimal strings LUKS2 uses for 64-bit values.
func parseUint(s string) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not a canonical decimal number", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
