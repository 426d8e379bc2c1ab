package uefi

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"unicode/utf16"
)

// Event is one measurement: the PCR, the TCG event type, the SHA-256
// digest extended, the event data, and a short description for people.
type Event struct {
	PCR    int
	Type   uint32
	Digest []byte // sha256
	Data   []byte
	Desc   string
}

// TCG event types (TCG PC Client PFP spec §10.4.1).
const (
	EvNoAction                   = 0x00000003
	EvSeparator                  = 0x00000004
	EvIPL                        = 0x0000000d
	EvEFIVariableDriverConfig    = 0x80000001
	EvEFIBootServicesApplication = 0x80000003
	EvEFIAction                  = 0x80000007
	EvEFIVariableAuthority       = 0x800000e0
	algSHA256                    = 0x000b
	maxEventLogEvents            = 1 << 16
	specIDSignature              = "Spec ID Event03\x00"
)

var eventTypeNames = map[uint32]string{
	0x0: "EV_PREBOOT_CERT", 0x1: "EV_POST_CODE", EvNoAction: "EV_NO_ACTION", EvSeparator: "EV_SEPARATOR",
	0x5: "EV_ACTION", 0x6: "EV_EVENT_TAG", 0x7: "EV_S_CRTM_CONTENTS", 0x8: "EV_S_CRTM_VERSION",
	0x9: "EV_CPU_MICROCODE", 0xa: "EV_PLATFORM_CONFIG_FLAGS", 0xb: "EV_TABLE_OF_DEVICES",
	0xc: "EV_COMPACT_HASH", EvIPL: "EV_IPL", 0xe: "EV_IPL_PARTITION_DATA", 0xf: "EV_NONHOST_CODE",
	0x10: "EV_NONHOST_CONFIG", 0x11: "EV_NONHOST_INFO", 0x12: "EV_OMIT_BOOT_DEVICE_EVENTS",
	EvEFIVariableDriverConfig: "EV_EFI_VARIABLE_DRIVER_CONFIG", 0x80000002: "EV_EFI_VARIABLE_BOOT",
	EvEFIBootServicesApplication: "EV_EFI_BOOT_SERVICES_APPLICATION", 0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
	0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER", 0x80000006: "EV_EFI_GPT_EVENT", EvEFIAction: "EV_EFI_ACTION",
	0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB", 0x80000009: "EV_EFI_HANDOFF_TABLES",
	0x8000000a: "EV_EFI_PLATFORM_FIRMWARE_BLOB2", 0x8000000b: "EV_EFI_HANDOFF_TABLES2",
	0x8000000c: "EV_EFI_VARIABLE_BOOT2", 0x80000010: "EV_EFI_HCRTM_EVENT",
	EvEFIVariableAuthority: "EV_EFI_VARIABLE_AUTHORITY",
}

func eventTypeName(t uint32) string {
	if n, ok := eventTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("event type %#x", t)
}

// ParseEventLog parses a TCG2 crypto-agile event log (TCG PC Client PFP
// spec §10.2: a SHA-1-format Spec ID header event, then TCG_PCR_EVENT2s)
// and returns every event after the header with its SHA-256 digest. A log
// without a SHA-256 bank, or any event without a SHA-256 digest, is an
// error. It never panics: every length is checked before use.
func ParseEventLog(raw []byte) (events []Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			events, err = nil, fmt.Errorf("parsing the event log: %v: %w", r, ErrMalformed)
		}
	}()
	r := &reader{b: raw}
	sizes, err := parseSpecID(r)
	if err != nil {
		return nil, fmt.Errorf("parsing the event log header: %w", err)
	}
	for i := 1; r.len() > 0; i++ {
		if i > maxEventLogEvents {
			return nil, fmt.Errorf("parsing the event log: more than %d events: %w", maxEventLogEvents, ErrMalformed)
		}
		e, err := parseEvent2(r, sizes)
		if err != nil {
			return nil, fmt.Errorf("parsing event %d of the event log: %w", i, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// parseSpecID reads the header event and returns the digest size of each
// algorithm the log carries.
func parseSpecID(r *reader) (map[uint16]int, error) {
	pcr, typ := r.u32(), r.u32()
	r.skip(20)
	data := r.bytes(int(r.u32()))
	if r.err != nil {
		return nil, r.err
	}
	if pcr != 0 || typ != EvNoAction || len(data) < 24 || string(data[:16]) != specIDSignature {
		return nil, fmt.Errorf("no Spec ID Event03 header (a SHA-1-only log?): %w", ErrMalformed)
	}
	h := &reader{b: data[24:]}
	n := int(h.u32())
	if n == 0 || n > 16 {
		return nil, fmt.Errorf("%d digest algorithms: %w", n, ErrMalformed)
	}
	sizes := map[uint16]int{}
	for range n {
		alg, size := h.u16(), int(h.u16())
		if size == 0 || size > 64 {
			return nil, fmt.Errorf("algorithm %#x with digest size %d: %w", alg, size, ErrMalformed)
		}
		sizes[alg] = size
	}
	if h.err != nil {
		return nil, h.err
	}
	if sizes[algSHA256] != sha256.Size {
		return nil, fmt.Errorf("no SHA-256 bank: %w", ErrMalformed)
	}
	return sizes, nil
}

func parseEvent2(r *reader, sizes map[uint16]int) (Event, error) {
	e := Event{PCR: int(r.u32()), Type: r.u32()}
	n := int(r.u32())
	if r.err == nil && (n == 0 || n > len(sizes)) {
		return e, fmt.Errorf("%d digests, the header names %d algorithms: %w", n, len(sizes), ErrMalformed)
	}
	for range n {
		alg := r.u16()
		size, ok := sizes[alg]
		if r.err == nil && !ok {
			return e, fmt.Errorf("digest of algorithm %#x the header does not name: %w", alg, ErrMalformed)
		}
		d := r.bytes(size)
		if alg == algSHA256 {
			e.Digest = bytes.Clone(d)
		}
	}
	e.Data = bytes.Clone(r.bytes(int(r.u32())))
	if r.err != nil {
		return e, r.err
	}
	if e.PCR < 0 || e.PCR > 23 {
		return e, fmt.Errorf("PCR %d: %w", e.PCR, ErrMalformed)
	}
	if e.Digest == nil {
		return e, fmt.Errorf("no SHA-256 digest: %w", ErrMalformed)
	}
	e.Desc = describe(e.Type, e.Data)
	return e, nil
}

// describe names an event for people: its type, and the variable name or
// the text it carries where there is one.
func describe(typ uint32, data []byte) string {
	name := eventTypeName(typ)
	switch typ {
	case EvEFIVariableDriverConfig, EvEFIVariableAuthority, 0x80000002, 0x8000000c:
		if len(data) >= 32 {
			n := binary.LittleEndian.Uint64(data[16:])
			if n <= 64 && uint64(len(data)) >= 32+2*n {
				return name + " " + utf16String(data[32:32+2*n])
			}
		}
	case EvEFIAction, 0x5:
		return name + " " + printable(data)
	case EvIPL:
		if len(data) >= 2 && len(data)%2 == 0 && data[1] == 0 {
			return name + " " + utf16String(data)
		}
		return name + " " + printable(data)
	}
	return name
}

func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return printable([]byte(string(utf16.Decode(u))))
}

// printable keeps printable ASCII, up to 64 bytes, and escapes the rest.
func printable(b []byte) string {
	b = bytes.TrimRight(b, "\x00")
	var out []byte
	for i, c := range b {
		if i == 64 {
			return string(out) + "…"
		}
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		} else {
			out = fmt.Appendf(out, "\\x%02x", c)
		}
	}
	return string(out)
}

// Replay extends each event's digest into a SHA-256 bank that starts at
// zeros and returns the PCR values. EV_NO_ACTION events are not extended.
func Replay(events []Event) map[int][]byte {
	pcrs := map[int][]byte{}
	for _, e := range events {
		if e.Type == EvNoAction {
			continue
		}
		cur, ok := pcrs[e.PCR]
		if !ok {
			cur = make([]byte, sha256.Size)
		}
		h := sha256.New()
		h.Write(cur)
		h.Write(e.Digest)
		pcrs[e.PCR] = h.Sum(nil)
	}
	return pcrs
}

// FirstDifference compares the events extended into pcr (EV_NO_ACTION
// aside) and returns "" when they agree in type and digest, or a sentence
// naming the first event that differs, or the first missing or extra one.
// Event data is not compared: only digests reach the PCR.
func FirstDifference(predicted, actual []Event, pcr int) string {
	p, a := eventsOf(predicted, pcr), eventsOf(actual, pcr)
	for i := 0; i < len(p) || i < len(a); i++ {
		switch {
		case i >= len(a):
			return fmt.Sprintf("PCR %d event %d (%s): predicted %s, missing from the log", pcr, i, p[i].Desc, short(p[i].Digest))
		case i >= len(p):
			return fmt.Sprintf("PCR %d event %d (%s): in the log (%s), not predicted", pcr, i, a[i].Desc, short(a[i].Digest))
		case p[i].Type != a[i].Type:
			return fmt.Sprintf("PCR %d event %d: predicted %s, the log has %s", pcr, i, p[i].Desc, a[i].Desc)
		case !bytes.Equal(p[i].Digest, a[i].Digest):
			return fmt.Sprintf("PCR %d event %d (%s): predicted %s, quoted %s", pcr, i, p[i].Desc, short(p[i].Digest), short(a[i].Digest))
		}
	}
	return ""
}

func eventsOf(events []Event, pcr int) []Event {
	var out []Event
	for _, e := range events {
		if e.PCR == pcr && e.Type != EvNoAction {
			out = append(out, e)
		}
	}
	return out
}

// short is the first 8 bytes of a digest in hex with an ellipsis.
func short(d []byte) string {
	if len(d) > 8 {
		return hex.EncodeToString(d[:8]) + "…"
	}
	return hex.EncodeToString(d)
}

// reader reads little-endian fields and remembers the first overrun.
type reader struct {
	b   []byte
	err error
}

func (r *reader) len() int { return len(r.b) }

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%d bytes wanted, %d left: %w", n, len(r.b), ErrMalformed)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) skip(n int) { r.bytes(n) }

func (r *reader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}
