package uefi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
)

// Variable is one UEFI variable (UEFI 2.10 §8.2).
type Variable struct {
	Name       string
	GUID       GUID
	Attributes uint32
	Data       []byte
}

// Variable attributes (UEFI 2.10 §8.2.1).
const (
	AttrNonVolatile                       = 0x01
	AttrBootServiceAccess                 = 0x02
	AttrRuntimeAccess                     = 0x04
	AttrTimeBasedAuthenticatedWriteAccess = 0x20
	// AttrsAuthenticated are the attributes of PK, KEK, db and dbx.
	AttrsAuthenticated = AttrNonVolatile | AttrBootServiceAccess | AttrRuntimeAccess | AttrTimeBasedAuthenticatedWriteAccess
)

// ErrStoreFull is returned by Bytes when the live variables do not fit the
// variable store.
var ErrStoreFull = errors.New("variable store full")

// Layout of an OVMF VARS image: EFI_FIRMWARE_VOLUME_HEADER (PI 1.7 vol. 3
// §3.2.1), then VARIABLE_STORE_HEADER and AUTHENTICATED_VARIABLE_HEADERs
// (EDK2 MdeModulePkg/Include/Guid/VariableFormat.h).
const (
	fvSignatureOff    = 0x28
	fvHeaderLenOff    = 0x30
	fvChecksumLenMin  = 0x38
	storeHeaderSize   = 28
	storeFormatted    = 0x5a
	storeHealthy      = 0xfe
	varHeaderSize     = 60
	varStartID        = 0x55aa
	varAdded          = 0x3f
	varAddedInDeleted = 0x3e // VAR_ADDED & VAR_IN_DELETED_TRANSITION
	varAlign          = 4
)

// record is a live variable with the header fields Variable leaves out.
type record struct {
	Variable
	monotonic   uint64
	timestamp   [16]byte
	pubKeyIndex uint32
}

// VarStore is a parsed OVMF variable store image. Edits are kept in
// memory; Bytes writes them back into an image of the same size.
type VarStore struct {
	raw        []byte
	storeStart int // first variable header
	storeEnd   int // end of the variable store (VARIABLE_STORE_HEADER.Size)
	vars       []record
	dirty      bool
}

// ParseVarStore parses an OVMF VARS image (.fd): a firmware volume with
// the gEfiSystemNvDataFvGuid file system holding an authenticated
// variable store. Only variables in state VAR_ADDED are live; deleted
// ones and ones in transition are skipped (a VAR_ADDED copy in deleted
// transition counts when no other copy exists, as in EDK2).
func ParseVarStore(b []byte) (*VarStore, error) {
	s := &VarStore{raw: bytes.Clone(b)}
	if err := s.parseHeaders(); err != nil {
		return nil, fmt.Errorf("parsing the variable store: %w", err)
	}
	var transit []record
	le := binary.LittleEndian
	for off := s.storeStart; off+varHeaderSize <= s.storeEnd; {
		h := b[off : off+varHeaderSize]
		if le.Uint16(h) != varStartID {
			break
		}
		r, next, err := s.parseVar(off)
		if err != nil {
			return nil, fmt.Errorf("parsing the variable store: %w", err)
		}
		switch h[2] {
		case varAdded:
			s.vars = append(s.vars, r)
		case varAddedInDeleted:
			transit = append(transit, r)
		}
		off = next
	}
	for _, r := range transit {
		if s.index(r.Name, r.GUID) < 0 {
			s.vars = append(s.vars, r)
		}
	}
	return s, nil
}

func (s *VarStore) parseHeaders() error {
	b, le := s.raw, binary.LittleEndian
	if len(b) < fvChecksumLenMin+storeHeaderSize || string(b[fvSignatureOff:fvSignatureOff+4]) != "_FVH" {
		return fmt.Errorf("no firmware volume header: %w", ErrMalformed)
	}
	var fsGUID GUID
	copy(fsGUID[:], b[0x10:0x20])
	if fsGUID != systemNVDataFVGUID {
		return fmt.Errorf("firmware volume file system %v is not the NV variable store: %w", fsGUID, ErrMalformed)
	}
	fvLen := le.Uint64(b[0x20:])
	hdrLen := int(le.Uint16(b[fvHeaderLenOff:]))
	if fvLen > uint64(len(b)) || hdrLen < fvChecksumLenMin || hdrLen%2 != 0 || hdrLen+storeHeaderSize > int(fvLen) {
		return fmt.Errorf("firmware volume length %d, header length %d out of range for %d bytes: %w", fvLen, hdrLen, len(b), ErrMalformed)
	}
	var sum uint16
	for i := 0; i < hdrLen; i += 2 {
		sum += le.Uint16(b[i:])
	}
	if sum != 0 {
		return fmt.Errorf("firmware volume header checksum %#x, want 0: %w", sum, ErrMalformed)
	}
	st := b[hdrLen:]
	var sig GUID
	copy(sig[:], st[:16])
	if sig != authenticatedVariableGUID {
		return fmt.Errorf("variable store signature %v is not gEfiAuthenticatedVariableGuid: %w", sig, ErrMalformed)
	}
	size := uint64(le.Uint32(st[16:]))
	if size < storeHeaderSize || uint64(hdrLen)+size > fvLen {
		return fmt.Errorf("variable store size %d past the firmware volume (%d): %w", size, fvLen, ErrMalformed)
	}
	if st[20] != storeFormatted || st[21] != storeHealthy {
		return fmt.Errorf("variable store format %#x state %#x, want formatted and healthy: %w", st[20], st[21], ErrMalformed)
	}
	s.storeStart = hdrLen + storeHeaderSize
	s.storeEnd = hdrLen + int(size)
	return nil
}

// parseVar reads the variable header at off and returns the variable and
// the offset of the next header.
func (s *VarStore) parseVar(off int) (record, int, error) {
	b, le := s.raw, binary.LittleEndian
	h := b[off : off+varHeaderSize]
	var r record
	r.Attributes = le.Uint32(h[4:])
	r.monotonic = le.Uint64(h[8:])
	copy(r.timestamp[:], h[16:32])
	r.pubKeyIndex = le.Uint32(h[32:])
	nameSize := uint64(le.Uint32(h[36:]))
	dataSize := uint64(le.Uint32(h[40:]))
	copy(r.GUID[:], h[44:60])
	nameOff := uint64(off + varHeaderSize)
	end := nameOff + nameSize + dataSize
	if end > uint64(s.storeEnd) {
		return r, 0, fmt.Errorf("variable at %d: name %d and data %d bytes run past the store end %d: %w", off, nameSize, dataSize, s.storeEnd, ErrMalformed)
	}
	if h[2] == varAdded || h[2] == varAddedInDeleted {
		name, err := decodeName(b[nameOff : nameOff+nameSize])
		if err != nil {
			return r, 0, fmt.Errorf("variable at %d: %w", off, err)
		}
		r.Name = name
		r.Data = bytes.Clone(b[nameOff+nameSize : end])
	}
	next := (end + varAlign - 1) &^ (varAlign - 1)
	return r, int(next), nil
}

// decodeName decodes a NUL-terminated UCS-2 variable name.
func decodeName(b []byte) (string, error) {
	if len(b) < 2 || len(b)%2 != 0 || b[len(b)-2] != 0 || b[len(b)-1] != 0 {
		return "", fmt.Errorf("name of %d bytes is not NUL-terminated UTF-16: %w", len(b), ErrMalformed)
	}
	u := make([]uint16, len(b)/2-1)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
		if u[i] == 0 {
			return "", fmt.Errorf("name has a NUL inside: %w", ErrMalformed)
		}
	}
	return string(utf16.Decode(u)), nil
}

func encodeName(name string, nul bool) []byte {
	u := utf16.Encode([]rune(name))
	if nul {
		u = append(u, 0)
	}
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func (s *VarStore) index(name string, g GUID) int {
	for i, r := range s.vars {
		if r.Name == name && r.GUID == g {
			return i
		}
	}
	return -1
}

// Get returns the live variable name in namespace g.
func (s *VarStore) Get(name string, g GUID) (Variable, bool) {
	i := s.index(name, g)
	if i < 0 {
		return Variable{}, false
	}
	v := s.vars[i].Variable
	v.Data = bytes.Clone(v.Data)
	return v, true
}

// Set replaces the variable with v's name and GUID, or adds it. Header
// fields Variable does not carry (monotonic count, timestamp, public key
// index) are kept on replacement and zero on addition.
func (s *VarStore) Set(v Variable) error {
	if v.Name == "" {
		return fmt.Errorf("setting a variable: empty name")
	}
	for _, r := range v.Name {
		if r == 0 || r > 0xffff {
			return fmt.Errorf("setting variable %q: name must be UCS-2 without NUL", v.Name)
		}
	}
	v.Data = bytes.Clone(v.Data)
	s.dirty = true
	if i := s.index(v.Name, v.GUID); i >= 0 {
		s.vars[i].Variable = v
		return nil
	}
	s.vars = append(s.vars, record{Variable: v})
	return nil
}

// Delete removes a variable and reports whether it was there.
func (s *VarStore) Delete(name string, g GUID) bool {
	i := s.index(name, g)
	if i < 0 {
		return false
	}
	s.vars = append(s.vars[:i], s.vars[i+1:]...)
	s.dirty = true
	return true
}

// Variables returns the live variables in store order.
func (s *VarStore) Variables() []Variable {
	out := make([]Variable, len(s.vars))
	for i, r := range s.vars {
		out[i] = r.Variable
		out[i].Data = bytes.Clone(r.Data)
	}
	return out
}

// Bytes returns the image: unchanged bytes when nothing was edited;
// otherwise the same image with the variable store rewritten compactly
// (live variables only, in order, the rest erased to 0xFF, as EDK2's
// reclaim does). The firmware volume header and everything after the
// variable store (the fault-tolerant-write areas) are left as parsed.
func (s *VarStore) Bytes() ([]byte, error) {
	out := bytes.Clone(s.raw)
	if !s.dirty {
		return out, nil
	}
	region := out[s.storeStart:s.storeEnd]
	for i := range region {
		region[i] = 0xff
	}
	off := 0
	le := binary.LittleEndian
	for _, r := range s.vars {
		name := encodeName(r.Name, true)
		size := varHeaderSize + len(name) + len(r.Data)
		if off+size > len(region) {
			return nil, fmt.Errorf("writing variable %q: %d bytes at %d do not fit the %d-byte store: %w", r.Name, size, off, len(region), ErrStoreFull)
		}
		h := region[off:]
		le.PutUint16(h, varStartID)
		h[2], h[3] = varAdded, 0
		le.PutUint32(h[4:], r.Attributes)
		le.PutUint64(h[8:], r.monotonic)
		copy(h[16:32], r.timestamp[:])
		le.PutUint32(h[32:], r.pubKeyIndex)
		le.PutUint32(h[36:], uint32(len(name)))
		le.PutUint32(h[40:], uint32(len(r.Data)))
		copy(h[44:60], r.GUID[:])
		copy(h[60:], name)
		copy(h[60+len(name):], r.Data)
		off = (off + size + varAlign - 1) &^ (varAlign - 1)
		if off > len(region) {
			off = len(region)
		}
	}
	return out, nil
}
