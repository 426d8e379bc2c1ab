package uefi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// SignatureData is one EFI_SIGNATURE_DATA: the owner and the signature
// (a DER certificate for CertX509GUID, a digest for CertSHA256GUID).
type SignatureData struct {
	Owner GUID
	Data  []byte
}

// SignatureList is one EFI_SIGNATURE_LIST (UEFI 2.10 §32.4.1). Every
// entry of a list has the same size.
type SignatureList struct {
	Type    GUID
	Entries []SignatureData
}

// sigListHeaderSize is SignatureType + SignatureListSize +
// SignatureHeaderSize + SignatureSize.
const sigListHeaderSize = 16 + 4 + 4 + 4

// ErrMalformed marks input bytes that do not have the structure the parser
// expects; every parse error wraps it.
var ErrMalformed = errors.New("malformed")

// ParseSignatureLists parses the contents of db, dbx, KEK or PK: a
// sequence of EFI_SIGNATURE_LISTs. Lists with a non-empty
// SignatureHeader are refused (none of the types UEFI defines uses one).
func ParseSignatureLists(b []byte) ([]SignatureList, error) {
	var out []SignatureList
	for off := 0; off < len(b); {
		rest := b[off:]
		if len(rest) < sigListHeaderSize {
			return nil, fmt.Errorf("parsing signature list at %d: %d bytes left, header needs %d: %w", off, len(rest), sigListHeaderSize, ErrMalformed)
		}
		var l SignatureList
		copy(l.Type[:], rest[:16])
		listSize := uint64(binary.LittleEndian.Uint32(rest[16:]))
		headerSize := binary.LittleEndian.Uint32(rest[20:])
		sigSize := uint64(binary.LittleEndian.Uint32(rest[24:]))
		switch {
		case listSize < sigListHeaderSize || listSize > uint64(len(rest)):
			return nil, fmt.Errorf("parsing signature list at %d: size %d out of range: %w", off, listSize, ErrMalformed)
		case headerSize != 0:
			return nil, fmt.Errorf("parsing signature list at %d: signature header of %d bytes not supported: %w", off, headerSize, ErrMalformed)
		case sigSize < 16:
			return nil, fmt.Errorf("parsing signature list at %d: signature size %d below the owner GUID: %w", off, sigSize, ErrMalformed)
		case (listSize-sigListHeaderSize)%sigSize != 0:
			return nil, fmt.Errorf("parsing signature list at %d: %d bytes of signatures is not a multiple of %d: %w", off, listSize-sigListHeaderSize, sigSize, ErrMalformed)
		}
		body := rest[sigListHeaderSize:listSize]
		for len(body) > 0 {
			var e SignatureData
			copy(e.Owner[:], body[:16])
			e.Data = bytes.Clone(body[16:sigSize])
			l.Entries = append(l.Entries, e)
			body = body[sigSize:]
		}
		out = append(out, l)
		off += int(listSize)
	}
	return out, nil
}

// EncodeSignatureLists encodes ls as EFI_SIGNATURE_LISTs. A list whose
// entries differ in size (X.509 certificates usually do) is written as
// one EFI_SIGNATURE_LIST per run of equal-sized entries, as UEFI
// requires; a list without entries is left out.
func EncodeSignatureLists(ls []SignatureList) []byte {
	var buf bytes.Buffer
	for _, l := range ls {
		for i := 0; i < len(l.Entries); {
			size := len(l.Entries[i].Data)
			j := i
			for j < len(l.Entries) && len(l.Entries[j].Data) == size {
				j++
			}
			sigSize := 16 + size
			var hdr [sigListHeaderSize]byte
			copy(hdr[:16], l.Type[:])
			binary.LittleEndian.PutUint32(hdr[16:], uint32(sigListHeaderSize+(j-i)*sigSize))
			binary.LittleEndian.PutUint32(hdr[24:], uint32(sigSize))
			buf.Write(hdr[:])
			for _, e := range l.Entries[i:j] {
				buf.Write(e.Owner[:])
				buf.Write(e.Data)
			}
			i = j
		}
	}
	return buf.Bytes()
}
