package uki

import (
	"encoding/binary"
	"fmt"
	"os"
)

// Offsets in a PE image (the PE/COFF specification).
const (
	peOffsetAt      = 0x3c // e_lfanew in the MS-DOS header
	coffTimeDateAt  = 8    // from the "PE\0\0" signature
	optChecksumAt   = 24 + 64
	minPEHeaderSize = optChecksumAt + 4
)

// stampFile sets the COFF header's TimeDateStamp of the PE image at path to
// epoch and recomputes the optional header's CheckSum. objcopy stamps the
// time it runs; a fixed stamp makes the UKI, and so its Authenticode digest
// (PCR 4), the same for the same inputs.
func stampFile(path string, epoch uint32) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("stamping the UKI: %w", err)
	}
	if err := stamp(b, epoch); err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("stamping the UKI: %w", err)
	}
	return nil
}

// stamp sets TimeDateStamp and CheckSum in the PE image b.
func stamp(b []byte, epoch uint32) error {
	pe, err := peHeader(b)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(b[pe+coffTimeDateAt:], epoch)
	binary.LittleEndian.PutUint32(b[pe+optChecksumAt:], checksum(b, pe+optChecksumAt))
	return nil
}

func peHeader(b []byte) (int, error) {
	if len(b) < peOffsetAt+4 || b[0] != 'M' || b[1] != 'Z' {
		return 0, fmt.Errorf("%w: not a PE image", ErrInput)
	}
	pe := int(binary.LittleEndian.Uint32(b[peOffsetAt:]))
	if pe < 0 || pe > len(b)-minPEHeaderSize || string(b[pe:pe+4]) != "PE\x00\x00" {
		return 0, fmt.Errorf("%w: not a PE image", ErrInput)
	}
	return pe, nil
}

// checksum is the PE image checksum (as IMAGEHLP's CheckSumMappedFile
// computes it): the one's-complement-style 16-bit sum of the file, skipping
// the CheckSum field at at, plus the file's length.
func checksum(b []byte, at int) uint32 {
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		if i == at || i == at+2 {
			continue
		}
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}
