package snp

import (
	"encoding/binary"
	"fmt"
)

// fourGiB is where the firmware image ends in guest physical memory.
const fourGiB = 1 << 32

// MaxFirmwareSize bounds the firmware images accepted (OVMF builds are 2 or
// 4 MiB, SeaBIOS 128 or 256 KiB).
const MaxFirmwareSize = 32 << 20

// GUIDs in their on-disk (little-endian, EFI_GUID) byte order. guids_test.go
// checks each against its textual form.
var (
	// 96b582de-1fb2-45f7-baea-a366c55a082d
	guidOVMFTableFooter = [16]byte{0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d}
	// 7255371f-3a3b-4b04-927b-1da6efa8d454
	guidSEVHashTableRV = [16]byte{0x1f, 0x37, 0x55, 0x72, 0x3b, 0x3a, 0x04, 0x4b, 0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54}
	// 00f771de-1a7e-4fcb-890e-68c77e2fb44e
	guidSEVESResetBlock = [16]byte{0xde, 0x71, 0xf7, 0x00, 0x7e, 0x1a, 0xcb, 0x4f, 0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e}
	// dc886566-984a-4798-a75e-5585a7bf67cc
	guidSEVMetadata = [16]byte{0x66, 0x65, 0x88, 0xdc, 0x4a, 0x98, 0x98, 0x47, 0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc}
)

// SectionType is the type of an OVMF SEV metadata section
// (OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm; QEMU's
// ovmf_sev_metadata_desc_type).
type SectionType uint32

// Section types of the OVMF SEV metadata.
const (
	SectionSNPSecMem       SectionType = 0x01
	SectionSNPSecrets      SectionType = 0x02
	SectionCPUID           SectionType = 0x03
	SectionSVSMCAA         SectionType = 0x04
	SectionSNPKernelHashes SectionType = 0x10
)

func (t SectionType) String() string {
	switch t {
	case SectionSNPSecMem:
		return "SNP_SEC_MEM"
	case SectionSNPSecrets:
		return "SNP_SECRETS"
	case SectionCPUID:
		return "CPUID"
	case SectionSVSMCAA:
		return "SVSM_CAA"
	case SectionSNPKernelHashes:
		return "SNP_KERNEL_HASHES"
	default:
		return fmt.Sprintf("SectionType(0x%x)", uint32(t))
	}
}

// Section is one entry of the OVMF SEV metadata: a guest-physical range the
// hypervisor adds to the guest with SNP_LAUNCH_UPDATE before launch.
type Section struct {
	GPA  uint32
	Size uint32
	Type SectionType
}

// OVMF is a parsed firmware image: its bytes, its footer GUID table and its
// SEV metadata sections. It is read-only after ParseOVMF.
type OVMF struct {
	data     []byte
	table    map[[16]byte][]byte
	sections []Section
}

// ParseOVMF parses a firmware image the way QEMU and sev-snp-measure read
// it: the GUIDed table that ends 32 bytes before the end of the image, and
// the SEV metadata ("ASEV") it points to. An image without the table parses
// to an OVMF with no entries; inconsistent tables are rejected with
// ErrMalformedFirmware. The image is not copied; the caller must not modify
// it afterwards.
func ParseOVMF(b []byte) (*OVMF, error) {
	if err := checkFirmwareSize(len(b)); err != nil {
		return nil, err
	}
	o := &OVMF{data: b, table: map[[16]byte][]byte{}}
	if err := o.parseTable(); err != nil {
		return nil, fmt.Errorf("parsing OVMF GUID table: %w", err)
	}
	if err := o.parseMetadata(); err != nil {
		return nil, fmt.Errorf("parsing OVMF SEV metadata: %w", err)
	}
	return o, nil
}

func checkFirmwareSize(n int) error {
	if n == 0 || n%PageSize != 0 || n > MaxFirmwareSize {
		return fmt.Errorf("%d bytes (want a non-zero multiple of %d, at most %d): %w", n, PageSize, MaxFirmwareSize, ErrFirmwareSize)
	}
	return nil
}

// footerEntryLen is the size of a table entry's trailer: u16 length + GUID.
const footerEntryLen = 2 + 16

func (o *OVMF) parseTable() error {
	d := o.data
	// The footer entry (u16 total table length, footer GUID) ends 32 bytes
	// before the end of the image.
	start := len(d) - 32 - footerEntryLen
	if start < 0 {
		return nil
	}
	if [16]byte(d[start+2:start+footerEntryLen]) != guidOVMFTableFooter {
		return nil
	}
	total := int(binary.LittleEndian.Uint16(d[start:]))
	if total < footerEntryLen {
		return fmt.Errorf("footer length %d below %d: %w", total, footerEntryLen, ErrMalformedFirmware)
	}
	tableLen := total - footerEntryLen
	if tableLen > start {
		return fmt.Errorf("footer length %d runs before the image start: %w", total, ErrMalformedFirmware)
	}
	t := d[start-tableLen : start]
	// Entries are walked backwards from the footer; each ends with its
	// length (covering data, length and GUID) and its GUID.
	for len(t) >= footerEntryLen {
		end := len(t)
		guid := [16]byte(t[end-16 : end])
		n := int(binary.LittleEndian.Uint16(t[end-footerEntryLen:]))
		if n < footerEntryLen || n > end {
			return fmt.Errorf("entry length %d out of range (table has %d bytes left): %w", n, end, ErrMalformedFirmware)
		}
		if _, dup := o.table[guid]; dup {
			// QEMU takes the entry nearest the footer, sev-snp-measure the
			// farthest: ambiguous, so refuse.
			return fmt.Errorf("duplicate entry %x: %w", guid, ErrMalformedFirmware)
		}
		o.table[guid] = t[end-n : end-footerEntryLen]
		t = t[:end-n]
	}
	return nil
}

const (
	metadataHeaderLen = 16 // "ASEV", u32 length, u32 version, u32 count
	metadataDescLen   = 12 // u32 GPA, u32 size, u32 type

	// Bounds on the metadata, far above any OVMF build (which has fewer
	// than ten sections covering well under 1 MiB), so that a hostile image
	// cannot make the digest loop for long.
	maxSections     = 256
	maxSectionBytes = 64 << 20
)

func (o *OVMF) parseMetadata() error {
	e, ok := o.table[guidSEVMetadata]
	if !ok {
		return nil
	}
	if len(e) < 4 {
		return fmt.Errorf("metadata entry has %d bytes: %w", len(e), ErrMalformedFirmware)
	}
	d := o.data
	off := uint64(binary.LittleEndian.Uint32(e))
	if off > uint64(len(d)) || off < metadataHeaderLen {
		return fmt.Errorf("metadata offset 0x%x out of range: %w", off, ErrMalformedFirmware)
	}
	start := uint64(len(d)) - off
	h := d[start : start+metadataHeaderLen]
	if string(h[0:4]) != "ASEV" {
		return fmt.Errorf("metadata signature %q: %w", h[0:4], ErrMalformedFirmware)
	}
	size := uint64(binary.LittleEndian.Uint32(h[4:]))
	version := binary.LittleEndian.Uint32(h[8:])
	count := uint64(binary.LittleEndian.Uint32(h[12:]))
	if version != 1 {
		return fmt.Errorf("metadata version %d: %w", version, ErrMalformedFirmware)
	}
	if size < metadataHeaderLen || size > off || count > (size-metadataHeaderLen)/metadataDescLen {
		return fmt.Errorf("metadata length %d for %d sections out of range: %w", size, count, ErrMalformedFirmware)
	}
	if count > maxSections {
		return fmt.Errorf("%d sections (at most %d): %w", count, maxSections, ErrMalformedFirmware)
	}
	items := d[start+metadataHeaderLen : start+size]
	var total uint64
	for i := range count {
		it := items[i*metadataDescLen:]
		s := Section{
			GPA:  binary.LittleEndian.Uint32(it[0:]),
			Size: binary.LittleEndian.Uint32(it[4:]),
			Type: SectionType(binary.LittleEndian.Uint32(it[8:])),
		}
		if s.GPA%PageSize != 0 || s.Size%PageSize != 0 || s.Size == 0 || uint64(s.GPA)+uint64(s.Size) > fourGiB {
			return fmt.Errorf("section %d (%v at 0x%x, 0x%x bytes) is not a page-aligned range below 4 GiB: %w", i, s.Type, s.GPA, s.Size, ErrMalformedFirmware)
		}
		if total += uint64(s.Size); total > maxSectionBytes {
			return fmt.Errorf("sections cover more than 0x%x bytes: %w", uint64(maxSectionBytes), ErrMalformedFirmware)
		}
		o.sections = append(o.sections, s)
	}
	return nil
}

// Data returns the firmware image.
func (o *OVMF) Data() []byte { return o.data }

// GPA returns the guest-physical address the image is loaded at: it ends at
// 4 GiB.
func (o *OVMF) GPA() uint64 { return fourGiB - uint64(len(o.data)) }

// Sections returns a copy of the SEV metadata sections, in table order.
func (o *OVMF) Sections() []Section { return append([]Section(nil), o.sections...) }

// HasSection reports whether a section of type t is present.
func (o *OVMF) HasSection(t SectionType) bool {
	for _, s := range o.sections {
		if s.Type == t {
			return true
		}
	}
	return false
}

// ResetEIP returns the SEV-ES reset EIP from the firmware's reset block: the
// address application processors start at. ErrNoResetVector when missing or
// zero.
func (o *OVMF) ResetEIP() (uint32, error) {
	e, ok := o.table[guidSEVESResetBlock]
	if !ok {
		return 0, fmt.Errorf("no SEV-ES reset block entry: %w", ErrNoResetVector)
	}
	if len(e) < 4 {
		return 0, fmt.Errorf("SEV-ES reset block entry has %d bytes: %w", len(e), ErrNoResetVector)
	}
	eip := binary.LittleEndian.Uint32(e)
	if eip == 0 {
		return 0, fmt.Errorf("SEV-ES reset EIP is zero: %w", ErrNoResetVector)
	}
	return eip, nil
}

// HashTableSize is the size of QEMU's PaddedSevHashTable: the 168-byte
// SevHashTable rounded up to 16 bytes.
const HashTableSize = 176

// HashTableGPA returns the guest-physical address and size of the area OVMF
// reserves for QEMU's SEV hash table (the SEV_HASH_TABLE_RV_GUID entry).
// Like QEMU, it refuses a zero base or an area smaller than the padded
// table, with ErrNoKernelHashes.
func (o *OVMF) HashTableGPA() (gpa, size uint32, err error) {
	e, ok := o.table[guidSEVHashTableRV]
	if !ok {
		return 0, 0, fmt.Errorf("no SEV hash table entry: %w", ErrNoKernelHashes)
	}
	if len(e) < 8 {
		return 0, 0, fmt.Errorf("SEV hash table entry has %d bytes: %w", len(e), ErrNoKernelHashes)
	}
	gpa = binary.LittleEndian.Uint32(e)
	size = binary.LittleEndian.Uint32(e[4:])
	if gpa == 0 || size < HashTableSize {
		return 0, 0, fmt.Errorf("SEV hash table area invalid (base=0x%x size=0x%x): %w", gpa, size, ErrNoKernelHashes)
	}
	return gpa, size, nil
}
