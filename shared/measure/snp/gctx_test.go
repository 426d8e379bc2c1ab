package snp

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"testing"
)

// specPageInfo writes PAGE_INFO field by field from the SNP firmware ABI
// table (offset, size, field), independently of pageInfo.
func specPageInfo(cur, contents []byte, length uint16, pageType, imi, vmpl3, vmpl2, vmpl1 byte, gpa uint64) []byte {
	b := make([]byte, 0x70)
	copy(b[0x00:0x30], cur)      // DIGEST_CUR, 48 bytes
	copy(b[0x30:0x60], contents) // CONTENTS, 48 bytes
	b[0x60], b[0x61] = byte(length), byte(length>>8)
	b[0x62] = pageType // PAGE_TYPE
	b[0x63] = imi      // IMI_PAGE (bit 0)
	b[0x64] = vmpl3    // VMPL3_PERMS
	b[0x65] = vmpl2    // VMPL2_PERMS
	b[0x66] = vmpl1    // VMPL1_PERMS
	for i := range 8 {
		b[0x68+i] = byte(gpa >> (8 * i)) // GPA
	}
	return b
}

func TestPageInfoLayout(t *testing.T) {
	var cur, contents [DigestSize]byte
	for i := range cur {
		cur[i] = byte(i)
		contents[i] = byte(0xa0 + i)
	}
	got := pageInfo(&cur, &contents, PageVMSA, 0x0123_4567_89ab_c000)
	want := specPageInfo(cur[:], contents[:], 0x70, 0x02, 0, 0, 0, 0, 0x0123_4567_89ab_c000)
	if !bytes.Equal(got[:], want) {
		t.Errorf("PAGE_INFO\n got %x\nwant %x", got, want)
	}
}

// TestChainHandComputed extends a digest by hand, one SHA-384 over a
// spec-built PAGE_INFO per page, and compares with gctx for each page type.
func TestChainHandComputed(t *testing.T) {
	page := bytes.Repeat([]byte{0x5a}, 2*PageSize)
	page[PageSize] = 0x01
	vmsa := vmsaPage(bspEIP, 1, 0x00800f12, VMMQEMU)

	ld := make([]byte, 48) // GCTX.LD starts as zeros
	step := func(pageType byte, gpa uint64, contents []byte) {
		s := sha512.Sum384(specPageInfo(ld, contents, 0x70, pageType, 0, 0, 0, 0, gpa))
		ld = s[:]
	}
	h0 := sha512.Sum384(page[:PageSize])
	h1 := sha512.Sum384(page[PageSize:])
	hv := sha512.Sum384(vmsa[:])
	zero := make([]byte, 48)
	step(0x01, 0xffffe000, h0[:])
	step(0x01, 0xfffff000, h1[:])
	step(0x03, 0x800000, zero)
	step(0x03, 0x801000, zero)
	step(0x04, 0x802000, zero)
	step(0x05, 0x803000, zero)
	step(0x06, 0x804000, zero)
	step(0x02, 0xFFFFFFFFF000, hv[:])

	var g gctx
	if err := g.normalPages(0xffffe000, page); err != nil {
		t.Fatal(err)
	}
	g.emptyPages(PageZero, 0x800000, 2*PageSize)
	g.emptyPages(PageUnmeasured, 0x802000, PageSize)
	g.emptyPages(PageSecrets, 0x803000, PageSize)
	g.emptyPages(PageCPUID, 0x804000, PageSize)
	g.vmsaPage(&vmsa)
	if !bytes.Equal(g.ld[:], ld) {
		t.Errorf("LD\n got %x\nwant %x", g.ld, ld)
	}
}

func TestNormalPagesWholePages(t *testing.T) {
	var g gctx
	if err := g.normalPages(0, make([]byte, PageSize+1)); !errors.Is(err, ErrFirmwareSize) {
		t.Fatalf("err = %v, want ErrFirmwareSize", err)
	}
	if g.ld != ([DigestSize]byte{}) {
		t.Error("digest extended by a rejected update")
	}
}
