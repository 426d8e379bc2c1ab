package uefi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
)

// peFile is the part of a PE/COFF image (Microsoft PE format
// specification) that Authenticode and the UKI stub look at. Every offset
// in it was checked against the file's length.
type peFile struct {
	size          int
	checksumOff   int // file offset of OptionalHeader.CheckSum
	certDirOff    int // file offset of the Certificate Table directory entry; 0 when absent
	sizeOfHeaders int
	certOff       int // file offset of the attribute certificate table
	certSize      int
	sections      []peSection // in section table order
}

type peSection struct {
	name        string
	virtualSize int
	rawSize     int
	rawOff      int
}

const (
	peMagic32     = 0x10b
	peMagic32Plus = 0x20b
	dirSecurity   = 4 // IMAGE_DIRECTORY_ENTRY_SECURITY
	maxSections   = 96
)

// parsePE reads the headers and section table of pe, refusing anything a
// hostile image could use to make two readers disagree: truncated
// headers, sections outside the file or overlapping each other or the
// headers, a certificate table that does not sit at the end of the file
// after every section.
func parsePE(pe []byte) (*peFile, error) {
	le := binary.LittleEndian
	if len(pe) < 0x40 || pe[0] != 'M' || pe[1] != 'Z' {
		return nil, fmt.Errorf("reading the DOS header: no MZ signature: %w", ErrMalformed)
	}
	ntOff := uint64(le.Uint32(pe[0x3c:]))
	if ntOff+24 > uint64(len(pe)) || !bytes.Equal(pe[ntOff:ntOff+4], []byte("PE\x00\x00")) {
		return nil, fmt.Errorf("reading the PE header at %d: no PE signature: %w", ntOff, ErrMalformed)
	}
	coff := int(ntOff) + 4
	nSections := int(le.Uint16(pe[coff+2:]))
	optSize := int(le.Uint16(pe[coff+16:]))
	opt := coff + 20
	if nSections == 0 || nSections > maxSections {
		return nil, fmt.Errorf("reading the COFF header: %d sections: %w", nSections, ErrMalformed)
	}
	if opt+optSize > len(pe) || optSize < 2 {
		return nil, fmt.Errorf("reading the optional header: %d bytes past the end of the file: %w", optSize, ErrMalformed)
	}
	var nDirOff, dirOff int
	switch magic := le.Uint16(pe[opt:]); magic {
	case peMagic32:
		nDirOff, dirOff = 92, 96
	case peMagic32Plus:
		nDirOff, dirOff = 108, 112
	default:
		return nil, fmt.Errorf("reading the optional header: magic %#x: %w", magic, ErrMalformed)
	}
	if optSize < dirOff {
		return nil, fmt.Errorf("reading the optional header: %d bytes, need %d: %w", optSize, dirOff, ErrMalformed)
	}
	f := &peFile{size: len(pe), checksumOff: opt + 64}
	f.sizeOfHeaders = int(le.Uint32(pe[opt+60:]))
	nDirs := uint64(le.Uint32(pe[opt+nDirOff:]))
	if nDirs > uint64(optSize-dirOff)/8 {
		return nil, fmt.Errorf("reading the data directories: %d entries do not fit the optional header: %w", nDirs, ErrMalformed)
	}
	if nDirs > dirSecurity {
		f.certDirOff = opt + dirOff + dirSecurity*8
		f.certOff = int(le.Uint32(pe[f.certDirOff:]))
		f.certSize = int(le.Uint32(pe[f.certDirOff+4:]))
	}
	secTable := opt + optSize
	if secTable+nSections*40 > len(pe) {
		return nil, fmt.Errorf("reading the section table: %d sections past the end of the file: %w", nSections, ErrMalformed)
	}
	if f.sizeOfHeaders < secTable+nSections*40 || f.sizeOfHeaders > len(pe) || f.sizeOfHeaders <= f.certDirOff+8 {
		return nil, fmt.Errorf("reading the optional header: SizeOfHeaders %d out of range: %w", f.sizeOfHeaders, ErrMalformed)
	}
	for i := range nSections {
		s := pe[secTable+i*40 : secTable+(i+1)*40]
		f.sections = append(f.sections, peSection{
			name:        string(bytes.TrimRight(s[:8], "\x00")),
			virtualSize: int(le.Uint32(s[8:])),
			rawSize:     int(le.Uint32(s[16:])),
			rawOff:      int(le.Uint32(s[20:])),
		})
	}
	if err := f.checkLayout(); err != nil {
		return nil, err
	}
	return f, nil
}

// checkLayout checks that the sections' raw data lie inside the file,
// after the headers, without overlapping, and that the certificate table
// follows them and ends the file.
func (f *peFile) checkLayout() error {
	end := f.sizeOfHeaders
	for _, s := range f.sorted() {
		if s.rawSize == 0 {
			continue
		}
		if s.rawOff < end {
			return fmt.Errorf("reading section %q: raw data at %d overlaps the headers or another section (ending at %d): %w", s.name, s.rawOff, end, ErrMalformed)
		}
		if uint64(s.rawOff)+uint64(s.rawSize) > uint64(f.size) {
			return fmt.Errorf("reading section %q: raw data [%d, +%d) past the end of the file (%d): %w", s.name, s.rawOff, s.rawSize, f.size, ErrMalformed)
		}
		end = s.rawOff + s.rawSize
	}
	if f.certSize == 0 {
		return nil
	}
	if f.certOff < end || uint64(f.certOff)+uint64(f.certSize) != uint64(f.size) {
		return fmt.Errorf("reading the certificate table: [%d, +%d) must follow the sections (ending at %d) and end the file (%d bytes): %w",
			f.certOff, f.certSize, end, f.size, ErrMalformed)
	}
	return nil
}

// sorted returns the sections ordered by PointerToRawData.
func (f *peFile) sorted() []peSection {
	s := append([]peSection(nil), f.sections...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].rawOff < s[j].rawOff })
	return s
}

// section returns the first section named name.
func (f *peFile) section(name string) (peSection, bool) {
	for _, s := range f.sections {
		if s.name == name {
			return s, true
		}
	}
	return peSection{}, false
}
