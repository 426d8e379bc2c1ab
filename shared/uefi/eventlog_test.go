package uefi

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

const recordedLog = "testdata/ovmf-secboot-eventlog.bin"

// The PCRs the vTPM quoted in the recorded boot (testdata/README.md).
var recordedPCRs = map[int]string{
	4:  "c34fa53f62540d9d3191e2e889f9654619d9fc7da6d49b6d9d53821c8a2bfc01",
	7:  "02a4f904010ebddfb1ce765622af8d48ac2408422e220ad4eed1e1856407f704",
	11: "b398192fc848e5e32dddfe29e9f40d7f991376945db98188d47ba07691c23f13",
}

func recordedEvents(t *testing.T) []Event {
	t.Helper()
	events, err := ParseEventLog(mustRead(t, recordedLog))
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func TestParseEventLogReplaysToQuote(t *testing.T) {
	events := recordedEvents(t)
	got := Replay(events)
	for pcr, want := range recordedPCRs {
		if hex.EncodeToString(got[pcr]) != want {
			t.Errorf("PCR %d replays to %x, quoted %s", pcr, got[pcr], want)
		}
	}
	// The log's shape, as recorded: 5 configuration variables, a
	// separator and one authority in PCR 7; action, separator and the UKI
	// in PCR 4; 8 stub events in PCR 11.
	want := map[int][]string{
		4: {"EV_EFI_ACTION Calling EFI Application from Boot Option", "EV_SEPARATOR", "EV_EFI_BOOT_SERVICES_APPLICATION"},
		7: {"EV_EFI_VARIABLE_DRIVER_CONFIG SecureBoot", "EV_EFI_VARIABLE_DRIVER_CONFIG PK", "EV_EFI_VARIABLE_DRIVER_CONFIG KEK",
			"EV_EFI_VARIABLE_DRIVER_CONFIG db", "EV_EFI_VARIABLE_DRIVER_CONFIG dbx", "EV_SEPARATOR", "EV_EFI_VARIABLE_AUTHORITY db"},
		11: {"EV_IPL .linux", "EV_IPL .linux", "EV_IPL .osrel", "EV_IPL .osrel", "EV_IPL .cmdline", "EV_IPL .cmdline", "EV_IPL .initrd", "EV_IPL .initrd"},
	}
	for pcr, descs := range want {
		var got []string
		for _, e := range eventsOf(events, pcr) {
			got = append(got, e.Desc)
		}
		if strings.Join(got, "|") != strings.Join(descs, "|") {
			t.Errorf("PCR %d events:\n got %q\nwant %q", pcr, got, descs)
		}
	}
	if bytes.HasPrefix(events[0].Data, []byte(specIDSignature)) {
		t.Error("the Spec ID header event was returned as an event")
	}
}

func TestReplaySkipsNoAction(t *testing.T) {
	d := sha256Of([]byte("x"))
	a := Replay([]Event{{PCR: 0, Type: EvNoAction, Digest: d}, {PCR: 0, Type: EvSeparator, Digest: d}})
	b := Replay([]Event{{PCR: 0, Type: EvSeparator, Digest: d}})
	if !bytes.Equal(a[0], b[0]) || len(a[0]) != 32 {
		t.Errorf("EV_NO_ACTION changed the replay: %x vs %x", a[0], b[0])
	}
	want := sha256Of(append(make([]byte, 32), d...))
	if !bytes.Equal(b[0], want) {
		t.Errorf("replay %x, want SHA-256(zeros || digest) %x", b[0], want)
	}
}

func TestFirstDifference(t *testing.T) {
	a := []Event{separator(7), action(4, "a"), {PCR: 7, Type: EvEFIVariableAuthority, Digest: sha256Of([]byte("db")), Desc: "EV_EFI_VARIABLE_AUTHORITY db"}}
	changed := bytes.Clone(a[2].Digest)
	changed[0] ^= 1
	tests := map[string]struct {
		actual []Event
		pcr    int
		want   string
	}{
		"equal":          {a, 7, ""},
		"other PCR only": {a[:2], 4, ""},
		"digest": {[]Event{a[0], a[1], {PCR: 7, Type: EvEFIVariableAuthority, Digest: changed}}, 7,
			"PCR 7 event 1 (EV_EFI_VARIABLE_AUTHORITY db): predicted " + short(a[2].Digest) + ", quoted " + short(changed)},
		"missing": {a[:2], 7, "PCR 7 event 1 (EV_EFI_VARIABLE_AUTHORITY db): predicted " + short(a[2].Digest) + ", missing from the log"},
		"extra":   {append(a, separator(7)), 7, "PCR 7 event 2 (EV_SEPARATOR): in the log (" + short(a[0].Digest) + "), not predicted"},
		"type":    {[]Event{a[0], a[1], separator(7)}, 7, "PCR 7 event 1: predicted EV_EFI_VARIABLE_AUTHORITY db, the log has EV_SEPARATOR"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := FirstDifference(a, tc.actual, tc.pcr); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestParseEventLogRefusesHostile cuts the recorded log at every length
// and corrupts its length fields: every result is an error or a shorter
// valid log, never a panic.
func TestParseEventLogRefusesHostile(t *testing.T) {
	raw := mustRead(t, recordedLog)
	// Only a cut at an event boundary is a valid (shorter) log.
	parsed := 0
	for n := 0; n <= len(raw); n++ {
		if _, err := ParseEventLog(raw[:n]); err == nil {
			parsed++
		}
	}
	if want := len(recordedEvents(t)) + 1; parsed != want {
		t.Errorf("%d cuts parsed, want %d (the event boundaries)", parsed, want)
	}
	le := binary.LittleEndian
	headerLen := 32 + int(le.Uint32(raw[28:]))
	tests := map[string]func([]byte) []byte{
		"empty":             func([]byte) []byte { return nil },
		"no Spec ID":        func(b []byte) []byte { b[32] = 'X'; return b },
		"no SHA-256 bank":   func(b []byte) []byte { return replaceAlg(b, algSHA256, 0x0c) },
		"header size huge":  func(b []byte) []byte { le.PutUint32(b[28:], 0xffffffff); return b },
		"digest count huge": func(b []byte) []byte { le.PutUint32(b[headerLen+8:], 0xffffffff); return b },
		"digest count zero": func(b []byte) []byte { le.PutUint32(b[headerLen+8:], 0); return b },
		"unknown algorithm": func(b []byte) []byte { le.PutUint16(b[headerLen+12:], 0x99); return b },
		"event size huge": func(b []byte) []byte {
			le.PutUint32(b[headerLen+12+2+20+2+32:], 0xfffffff0)
			return b
		},
		"PCR out of range": func(b []byte) []byte { le.PutUint32(b[headerLen:], 99); return b },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseEventLog(mutate(bytes.Clone(raw))); !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v, want ErrMalformed", err)
			}
		})
	}
}

// replaceAlg rewrites algorithm id from to to in the Spec ID header.
func replaceAlg(b []byte, from, to uint16) []byte {
	le := binary.LittleEndian
	n := int(le.Uint32(b[32+24:]))
	for i := range n {
		off := 32 + 28 + 4*i
		if le.Uint16(b[off:]) == from {
			le.PutUint16(b[off:], to)
		}
	}
	return b
}

func FuzzParseEventLog(f *testing.F) {
	raw, err := os.ReadFile(recordedLog)
	if err == nil {
		f.Add(raw)
		f.Add(raw[:200])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := ParseEventLog(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for _, e := range events {
			if len(e.Digest) != 32 || e.PCR < 0 || e.PCR > 23 {
				t.Fatalf("event %+v escaped the checks", e)
			}
		}
		_ = Replay(events)
		_ = FirstDifference(events, events[:len(events)/2], 7)
	})
}
