package snp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

func TestParseFixture(t *testing.T) {
	o, err := ParseOVMF(amdSevSuffix)
	if err != nil {
		t.Fatal(err)
	}
	want := []Section{
		{GPA: 0x800000, Size: 0x9000, Type: SectionSNPSecMem},
		{GPA: 0x80a000, Size: 0x3000, Type: SectionSNPSecMem},
		{GPA: 0x80d000, Size: 0x1000, Type: SectionSNPSecrets},
		{GPA: 0x80e000, Size: 0x1000, Type: SectionCPUID},
		{GPA: 0x80f000, Size: 0x1000, Type: SectionSVSMCAA},
		{GPA: 0x810000, Size: 0x1000, Type: SectionSNPKernelHashes},
		{GPA: 0x811000, Size: 0xf000, Type: SectionSNPSecMem},
	}
	if got := o.Sections(); !slices.Equal(got, want) {
		t.Errorf("sections\n got %v\nwant %v", got, want)
	}
	if eip, err := o.ResetEIP(); err != nil || eip != 0x80b004 {
		t.Errorf("reset EIP = 0x%x, %v; want 0x80b004", eip, err)
	}
	if gpa, size, err := o.HashTableGPA(); err != nil || gpa != 0x810c00 || size != 0x400 {
		t.Errorf("hash table = 0x%x+0x%x, %v; want 0x810c00+0x400", gpa, size, err)
	}
	if o.GPA() != 0xfffff000 {
		t.Errorf("GPA = 0x%x", o.GPA())
	}
	// Sections returns a copy.
	s := o.Sections()
	s[0].Size = 0
	if o.Sections()[0].Size != 0x9000 {
		t.Error("Sections exposes internal state")
	}
}

// TestDebianOVMFTables reads Debian 12's /usr/share/ovmf/OVMF.fd (package
// ovmf, installed by scripts/install-deps.sh): it carries SEV metadata for
// SNP but no SNP_KERNEL_HASHES section and a zero hash table address, so it
// cannot measure a directly booted kernel.
func TestDebianOVMFTables(t *testing.T) {
	fw := debianOVMF(t)
	o, err := ParseOVMF(fw)
	if err != nil {
		t.Fatal(err)
	}
	want := []Section{
		{GPA: 0x800000, Size: 0x9000, Type: SectionSNPSecMem},
		{GPA: 0x80a000, Size: 0x3000, Type: SectionSNPSecMem},
		{GPA: 0x80d000, Size: 0x1000, Type: SectionSNPSecrets},
		{GPA: 0x80e000, Size: 0x1000, Type: SectionCPUID},
		{GPA: 0x80f000, Size: 0x11000, Type: SectionSNPSecMem},
	}
	if got := o.Sections(); !slices.Equal(got, want) {
		t.Errorf("sections\n got %v\nwant %v", got, want)
	}
	if eip, err := o.ResetEIP(); err != nil || eip != 0x80b004 {
		t.Errorf("reset EIP = 0x%x, %v; want 0x80b004", eip, err)
	}
	if _, _, err := o.HashTableGPA(); !errors.Is(err, ErrNoKernelHashes) {
		t.Errorf("hash table err = %v, want ErrNoKernelHashes", err)
	}
	if o.HasSection(SectionSNPKernelHashes) {
		t.Error("unexpected SNP_KERNEL_HASHES section")
	}
}

func TestParseOVMFErrors(t *testing.T) {
	resetBlock := fwEntry{guidSEVESResetBlock, le32(0x80b004)}
	good := asev(1, Section{GPA: 0x800000, Size: 0x1000, Type: SectionSNPSecMem})
	badLen := func(n uint16) []byte {
		b := synthFirmware(PageSize, good, resetBlock)
		binary.LittleEndian.PutUint16(b[PageSize-32-18:], n)
		return b
	}
	entryLen := func(n uint16) []byte {
		b := synthFirmware(PageSize, nil, fwEntry{guidSEVESResetBlock, le32(1)})
		// The entry's length field sits just before its GUID, which is
		// just before the footer entry.
		binary.LittleEndian.PutUint16(b[PageSize-32-18-18:], n)
		return b
	}
	metaAt := func(off uint32) []byte {
		return synthFirmware(PageSize, nil, fwEntry{guidSEVMetadata, le32(off)})
	}
	metaWith := func(edit func(m []byte)) []byte {
		m := bytes.Clone(good)
		edit(m)
		return synthFirmware(PageSize, m, resetBlock)
	}
	tooMany := make([]Section, maxSections+1)
	for i := range tooMany {
		tooMany[i] = Section{GPA: uint32(i) * PageSize, Size: PageSize, Type: SectionSNPSecMem}
	}
	tests := map[string]struct {
		fw      []byte
		wantErr error
	}{
		"good":                        {fw: synthFirmware(PageSize, good, resetBlock)},
		"no table at all":             {fw: bytes.Repeat([]byte{0xff}, PageSize)},
		"empty":                       {fw: nil, wantErr: ErrFirmwareSize},
		"not whole pages":             {fw: make([]byte, PageSize+1), wantErr: ErrFirmwareSize},
		"too large":                   {fw: make([]byte, MaxFirmwareSize+PageSize), wantErr: ErrFirmwareSize},
		"footer length below trailer": {fw: badLen(17), wantErr: ErrMalformedFirmware},
		"footer length past start":    {fw: badLen(0xffff), wantErr: ErrMalformedFirmware},
		"entry length below trailer":  {fw: entryLen(3), wantErr: ErrMalformedFirmware},
		"entry length past table":     {fw: entryLen(200), wantErr: ErrMalformedFirmware},
		"duplicate entry":             {fw: synthFirmware(PageSize, nil, resetBlock, resetBlock), wantErr: ErrMalformedFirmware},
		"metadata entry too short":    {fw: synthFirmware(PageSize, nil, fwEntry{guidSEVMetadata, []byte{1, 2}}), wantErr: ErrMalformedFirmware},
		"metadata offset past start":  {fw: metaAt(PageSize + 1), wantErr: ErrMalformedFirmware},
		"metadata offset in header":   {fw: metaAt(8), wantErr: ErrMalformedFirmware},
		"bad signature":               {fw: metaWith(func(m []byte) { m[0] = 'X' }), wantErr: ErrMalformedFirmware},
		"version 2":                   {fw: metaWith(func(m []byte) { m[8] = 2 }), wantErr: ErrMalformedFirmware},
		"length past image":           {fw: metaWith(func(m []byte) { binary.LittleEndian.PutUint32(m[4:], PageSize+1) }), wantErr: ErrMalformedFirmware},
		"length below header":         {fw: metaWith(func(m []byte) { binary.LittleEndian.PutUint32(m[4:], 8) }), wantErr: ErrMalformedFirmware},
		"count past length":           {fw: metaWith(func(m []byte) { binary.LittleEndian.PutUint32(m[12:], 2) }), wantErr: ErrMalformedFirmware},
		"unaligned section GPA":       {fw: synthFirmware(PageSize, asev(1, Section{GPA: 0x800010, Size: 0x1000, Type: 1}), resetBlock), wantErr: ErrMalformedFirmware},
		"unaligned section size":      {fw: synthFirmware(PageSize, asev(1, Section{GPA: 0x800000, Size: 0x1001, Type: 1}), resetBlock), wantErr: ErrMalformedFirmware},
		"empty section":               {fw: synthFirmware(PageSize, asev(1, Section{GPA: 0x800000, Size: 0, Type: 1}), resetBlock), wantErr: ErrMalformedFirmware},
		"section past 4 GiB":          {fw: synthFirmware(PageSize, asev(1, Section{GPA: 0xfffff000, Size: 0x2000, Type: 1}), resetBlock), wantErr: ErrMalformedFirmware},
		"section count over bound":    {fw: synthFirmware(2*PageSize, asev(1, tooMany...), resetBlock), wantErr: ErrMalformedFirmware},
		"sections too large in total": {fw: synthFirmware(PageSize, asev(1, Section{GPA: 0, Size: 0x2000000, Type: 1}, Section{GPA: 0x2000000, Size: 0x2001000, Type: 1}), resetBlock), wantErr: ErrMalformedFirmware},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseOVMF(tt.fw)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestOVMFEntries(t *testing.T) {
	tests := map[string]struct {
		entries    []fwEntry
		wantEIP    uint32
		wantEIPErr error
		wantHTErr  error
	}{
		"both": {
			entries: []fwEntry{{guidSEVESResetBlock, le32(0x80b004)}, {guidSEVHashTableRV, append(le32(0x810c00), le32(0x400)...)}},
			wantEIP: 0x80b004,
		},
		"none":                {wantEIPErr: ErrNoResetVector, wantHTErr: ErrNoKernelHashes},
		"short entries":       {entries: []fwEntry{{guidSEVESResetBlock, []byte{4}}, {guidSEVHashTableRV, le32(0x810c00)}}, wantEIPErr: ErrNoResetVector, wantHTErr: ErrNoKernelHashes},
		"zero values":         {entries: []fwEntry{{guidSEVESResetBlock, le32(0)}, {guidSEVHashTableRV, append(le32(0), le32(0x400)...)}}, wantEIPErr: ErrNoResetVector, wantHTErr: ErrNoKernelHashes},
		"hash area too small": {entries: []fwEntry{{guidSEVESResetBlock, le32(0x80b004)}, {guidSEVHashTableRV, append(le32(0x810c00), le32(175)...)}}, wantEIP: 0x80b004, wantHTErr: ErrNoKernelHashes},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			o, err := ParseOVMF(synthFirmware(PageSize, nil, tt.entries...))
			if err != nil {
				t.Fatal(err)
			}
			eip, err := o.ResetEIP()
			if !errors.Is(err, tt.wantEIPErr) || eip != tt.wantEIP {
				t.Errorf("ResetEIP = 0x%x, %v; want 0x%x, %v", eip, err, tt.wantEIP, tt.wantEIPErr)
			}
			if _, _, err := o.HashTableGPA(); !errors.Is(err, tt.wantHTErr) {
				t.Errorf("HashTableGPA err = %v, want %v", err, tt.wantHTErr)
			}
		})
	}
}

// debianOVMF returns Debian's OVMF.fd; the test fails when the ovmf package
// is not installed.
func debianOVMF(t *testing.T) []byte {
	t.Helper()
	fw, _ := installedFirmware(t, debianOVMFPath)
	return fw
}
