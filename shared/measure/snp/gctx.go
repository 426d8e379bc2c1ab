package snp

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
)

const (
	// PageSize is the granule of every SNP_LAUNCH_UPDATE.
	PageSize = 4096
	// DigestSize is the size of the launch digest (SHA-384).
	DigestSize = sha512.Size384

	pageInfoLen = 0x70
	// vmsaGPA is the GPA recorded for VMSA pages: the RMP records them at
	// (u64)-1, page aligned and with the bits above 51 cleared.
	vmsaGPA = 0xFFFF_FFFF_F000
)

// PageType is the PAGE_TYPE field of PAGE_INFO (SNP firmware ABI,
// SNP_LAUNCH_UPDATE).
type PageType uint8

// Page types of SNP_LAUNCH_UPDATE.
const (
	PageNormal     PageType = 0x01
	PageVMSA       PageType = 0x02
	PageZero       PageType = 0x03
	PageUnmeasured PageType = 0x04
	PageSecrets    PageType = 0x05
	PageCPUID      PageType = 0x06
)

// gctx is the guest context's launch digest (GCTX.LD) being accumulated.
type gctx struct {
	ld [DigestSize]byte
}

// pageInfo lays out the PAGE_INFO structure (SNP firmware ABI, "PAGE_INFO
// structure"): DIGEST_CUR at 0x00, CONTENTS at 0x30, LENGTH at 0x60,
// PAGE_TYPE at 0x62, IMI_PAGE at 0x63, VMPL3/2/1_PERMS at 0x64..0x66,
// reserved 0x67, GPA at 0x68. IMI and the VMPL permissions are always zero
// for a launch by the hypervisor.
func pageInfo(cur, contents *[DigestSize]byte, t PageType, gpa uint64) [pageInfoLen]byte {
	var pi [pageInfoLen]byte
	copy(pi[0x00:0x30], cur[:])
	copy(pi[0x30:0x60], contents[:])
	binary.LittleEndian.PutUint16(pi[0x60:], pageInfoLen)
	pi[0x62] = byte(t)
	binary.LittleEndian.PutUint64(pi[0x68:], gpa)
	return pi
}

func (g *gctx) update(t PageType, gpa uint64, contents *[DigestSize]byte) {
	pi := pageInfo(&g.ld, contents, t, gpa)
	g.ld = sha512.Sum384(pi[:])
}

// normalPages measures data, a whole number of pages, as NORMAL pages
// starting at gpa.
func (g *gctx) normalPages(gpa uint64, data []byte) error {
	if len(data)%PageSize != 0 {
		return fmt.Errorf("measuring %d bytes at 0x%x as normal pages: %w", len(data), gpa, ErrFirmwareSize)
	}
	for off := 0; off < len(data); off += PageSize {
		h := sha512.Sum384(data[off : off+PageSize])
		g.update(PageNormal, gpa+uint64(off), &h)
	}
	return nil
}

// emptyPages measures n bytes (whole pages) at gpa as pages of type t whose
// CONTENTS field is zero (ZERO, UNMEASURED, SECRETS, CPUID).
func (g *gctx) emptyPages(t PageType, gpa, n uint64) {
	var zero [DigestSize]byte
	for off := uint64(0); off < n; off += PageSize {
		g.update(t, gpa+off, &zero)
	}
}

func (g *gctx) vmsaPage(page *[PageSize]byte) {
	h := sha512.Sum384(page[:])
	g.update(PageVMSA, vmsaGPA, &h)
}
