package snp

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// uuidLE is QEMU's UUID_LE(l, w1, w2, b0..b7): the first three fields
// little-endian, the eight bytes as they are.
func uuidLE(l uint32, w1, w2 uint16, b ...byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, l)
	out = binary.LittleEndian.AppendUint16(out, w1)
	out = binary.LittleEndian.AppendUint16(out, w2)
	return append(out, b...)
}

// guidText converts the textual GUID form to its on-disk bytes, as
// Python's uuid.UUID(...).bytes_le does.
func guidText(t *testing.T, s string) []byte {
	t.Helper()
	p := strings.Split(s, "-")
	if len(p) != 5 {
		t.Fatalf("bad GUID %q", s)
	}
	raw, err := hex.DecodeString(strings.Join(p, ""))
	if err != nil || len(raw) != 16 {
		t.Fatalf("bad GUID %q", s)
	}
	return append([]byte{raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6]}, raw[8:]...)
}

func TestGUIDs(t *testing.T) {
	tests := map[string]struct {
		got  [16]byte
		text string
	}{
		"OVMF table footer":     {guidOVMFTableFooter, "96b582de-1fb2-45f7-baea-a366c55a082d"},
		"SEV hash table RV":     {guidSEVHashTableRV, "7255371f-3a3b-4b04-927b-1da6efa8d454"},
		"SEV-ES reset block":    {guidSEVESResetBlock, "00f771de-1a7e-4fcb-890e-68c77e2fb44e"},
		"SEV metadata":          {guidSEVMetadata, "dc886566-984a-4798-a75e-5585a7bf67cc"},
		"hash table header":     {guidHashTableHeader, "9438d606-4f22-4cc9-b479-a793d411fd21"},
		"hash table kernel":     {guidHashKernel, "4de79437-abd2-427f-b835-d5b172d2045b"},
		"hash table initrd":     {guidHashInitrd, "44baf731-3a2f-4bd7-9af1-41e29169781d"},
		"hash table cmdline":    {guidHashCmdline, "97d02dd8-bd20-4c94-aa78-e7714d36ab2a"},
		"fixture footer (self)": {[16]byte(amdSevSuffix[len(amdSevSuffix)-48 : len(amdSevSuffix)-32]), "96b582de-1fb2-45f7-baea-a366c55a082d"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if want := guidText(t, tt.text); !bytes.Equal(tt.got[:], want) {
				t.Errorf("%x, want %x", tt.got, want)
			}
		})
	}
}

// TestHashTableQEMULayout checks HashTable against QEMU's target/i386/sev.c:
// SevHashTableEntry {QemuUUID guid; uint16_t len; uint8_t hash[32]},
// SevHashTable {guid; len; cmdline; initrd; kernel} (QEMU_PACKED),
// PaddedSevHashTable rounding it up to 16 bytes with zeros, ht->len =
// sizeof(*ht), entry len = sizeof(entry), GUIDs given there as UUID_LE.
func TestHashTableQEMULayout(t *testing.T) {
	kernel := []byte("a kernel")
	initrd := []byte("an initrd")
	const cmdline = "console=ttyS0"
	got := HashTable(kernel, initrd, cmdline)

	sum := func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
	entry := func(guid, hash []byte) []byte {
		return append(binary.LittleEndian.AppendUint16(bytes.Clone(guid), 16+2+32), hash...)
	}
	want := uuidLE(0x9438d606, 0x4f22, 0x4cc9, 0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21)
	want = binary.LittleEndian.AppendUint16(want, 16+2+3*(16+2+32))
	want = append(want, entry(uuidLE(0x97d02dd8, 0xbd20, 0x4c94, 0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a), sum([]byte("console=ttyS0\x00")))...)
	want = append(want, entry(uuidLE(0x44baf731, 0x3a2f, 0x4bd7, 0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d), sum(initrd))...)
	want = append(want, entry(uuidLE(0x4de79437, 0xabd2, 0x427f, 0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b), sum(kernel))...)
	if len(want) != 168 {
		t.Fatalf("reference SevHashTable is %d bytes, want 168", len(want))
	}
	want = append(want, make([]byte, (len(want)+15)&^15-len(want))...)
	if len(want) != 176 || len(got) != 176 {
		t.Fatalf("PaddedSevHashTable sizes: reference %d, got %d, want 176", len(want), len(got))
	}
	if !bytes.Equal(got[:], want) {
		t.Errorf("table\n got %x\nwant %x", got, want)
	}
}

func TestHashTableDefaults(t *testing.T) {
	got := HashTable([]byte{}, nil, "")
	emptySum := sha256.Sum256(nil)
	nulSum := sha256.Sum256([]byte{0})
	if !bytes.Equal(got[18+18:18+50], nulSum[:]) {
		t.Error("no command line must hash a single NUL")
	}
	if !bytes.Equal(got[68+18:68+50], emptySum[:]) {
		t.Error("no initrd must hash an empty buffer")
	}
	if !bytes.Equal(got[118+18:118+50], emptySum[:]) {
		t.Error("empty kernel must hash an empty buffer")
	}
}

func TestHashesRegion(t *testing.T) {
	table := HashTable([]byte("k"), nil, "")
	tests := map[string]struct {
		tableGPA uint32
		size     uint32
		wantOff  int
		wantErr  error
	}{
		"fixture layout":       {tableGPA: 0x810c00, size: PageSize, wantOff: 0xc00},
		"page start":           {tableGPA: 0x810000, size: PageSize, wantOff: 0},
		"last fitting offset":  {tableGPA: 0x810000 + PageSize - 176, size: PageSize, wantOff: PageSize - 176},
		"runs past the region": {tableGPA: 0x810000 + PageSize - 175, size: PageSize, wantErr: ErrMalformedFirmware},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := hashesRegion(&table, tt.tableGPA, tt.size)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			want := make([]byte, tt.size)
			copy(want[tt.wantOff:], table[:])
			if !bytes.Equal(r, want) {
				t.Error("region bytes differ")
			}
		})
	}
}
