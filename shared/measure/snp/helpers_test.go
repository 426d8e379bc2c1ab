package snp

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// metadataStart returns the offset of the "ASEV" header in fw.
func metadataStart(t *testing.T, fw []byte) int {
	t.Helper()
	o, err := ParseOVMF(fw)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := o.table[guidSEVMetadata]
	if !ok {
		t.Fatal("no metadata entry")
	}
	start := len(fw) - int(binary.LittleEndian.Uint32(e))
	if !bytes.Equal(fw[start:start+4], []byte("ASEV")) {
		t.Fatal("no ASEV header")
	}
	return start
}

// withSectionType returns a copy of fw whose metadata sections of type from
// are of type to.
func withSectionType(t *testing.T, fw []byte, from, to SectionType) []byte {
	t.Helper()
	out := bytes.Clone(fw)
	start := metadataStart(t, out)
	n := int(binary.LittleEndian.Uint32(out[start+12:]))
	changed := false
	for i := range n {
		at := start + metadataHeaderLen + i*metadataDescLen + 8
		if SectionType(binary.LittleEndian.Uint32(out[at:])) == from {
			binary.LittleEndian.PutUint32(out[at:], uint32(to))
			changed = true
		}
	}
	if !changed {
		t.Fatalf("no %v section", from)
	}
	return out
}

// tableEntry returns the offset in fw of the data of the GUID table entry
// guid (entries are sub-slices of the image).
func tableEntry(t *testing.T, fw []byte, guid [16]byte) int {
	t.Helper()
	o, err := ParseOVMF(fw)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := o.table[guid]
	if !ok {
		t.Fatalf("no entry %x", guid)
	}
	return cap(fw) - cap(e)
}

type fwEntry struct {
	guid [16]byte
	data []byte
}

// synthFirmware builds a size-byte image (0xff filled) with an OVMF GUID
// table holding entries (the first one nearest the footer) and, when meta
// is non-nil, the metadata blob at the start of the last page with a
// metadata entry pointing at it.
func synthFirmware(size int, meta []byte, entries ...fwEntry) []byte {
	b := bytes.Repeat([]byte{0xff}, size)
	if meta != nil {
		copy(b[size-PageSize:], meta)
		off := make([]byte, 4)
		binary.LittleEndian.PutUint32(off, PageSize)
		entries = append(entries, fwEntry{guidSEVMetadata, off})
	}
	footer := size - 32 - footerEntryLen
	at := footer
	for _, e := range entries {
		n := len(e.data) + footerEntryLen
		at -= n
		copy(b[at:], e.data)
		binary.LittleEndian.PutUint16(b[at+len(e.data):], uint16(n))
		copy(b[at+len(e.data)+2:], e.guid[:])
	}
	binary.LittleEndian.PutUint16(b[footer:], uint16(footer-at+footerEntryLen))
	copy(b[footer+2:], guidOVMFTableFooter[:])
	return b
}

// asev builds an SEV metadata blob ("ASEV", length, version, count,
// sections).
func asev(version uint32, sections ...Section) []byte {
	b := make([]byte, metadataHeaderLen+len(sections)*metadataDescLen)
	copy(b, "ASEV")
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[8:], version)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(sections)))
	for i, s := range sections {
		d := b[metadataHeaderLen+i*metadataDescLen:]
		binary.LittleEndian.PutUint32(d[0:], s.GPA)
		binary.LittleEndian.PutUint32(d[4:], s.Size)
		binary.LittleEndian.PutUint32(d[8:], uint32(s.Type))
	}
	return b
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
