package snp

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// bspEIP is the x86 reset vector the bootstrap processor starts at.
const bspEIP = 0xfffffff0

// VMM names the hypervisor whose initial vCPU state is measured. QEMU (with
// a Linux 6.10+ KVM host, as sev-snp-measure 0.0.10+) and EC2 differ in a
// few segment attributes, RDX and the FPU control words.
type VMM int

// Supported hypervisors.
const (
	VMMQEMU VMM = iota + 1
	VMMEC2
)

// ParseVMM maps "QEMU" (also "") and "EC2", case-insensitively.
func ParseVMM(s string) (VMM, error) {
	switch strings.ToLower(s) {
	case "", "qemu":
		return VMMQEMU, nil
	case "ec2":
		return VMMEC2, nil
	}
	return 0, fmt.Errorf("VMM type %q: %w", s, ErrUnknownVMM)
}

// Offsets in the VMSA page (struct sev_es_save_area in Linux
// arch/x86/include/asm/svm.h, AMD APM vol. 2 table B-4). Segments are 16
// bytes: selector u16, attributes u16, limit u32, base u64.
const (
	vmsaES          = 0x000
	vmsaCS          = 0x010
	vmsaSS          = 0x020
	vmsaDS          = 0x030
	vmsaFS          = 0x040
	vmsaGS          = 0x050
	vmsaGDTR        = 0x060
	vmsaLDTR        = 0x070
	vmsaIDTR        = 0x080
	vmsaTR          = 0x090
	vmsaEFER        = 0x0d0
	vmsaCR4         = 0x148
	vmsaCR0         = 0x158
	vmsaDR7         = 0x160
	vmsaDR6         = 0x168
	vmsaRFLAGS      = 0x170
	vmsaRIP         = 0x178
	vmsaGPAT        = 0x268
	vmsaRDX         = 0x310
	vmsaSEVFeatures = 0x3b0
	vmsaXCR0        = 0x3e8
	vmsaMXCSR       = 0x408
	vmsaX87FCW      = 0x410
)

func putSeg(p *[PageSize]byte, off int, selector, attrib uint16, limit uint32, base uint64) {
	binary.LittleEndian.PutUint16(p[off:], selector)
	binary.LittleEndian.PutUint16(p[off+2:], attrib)
	binary.LittleEndian.PutUint32(p[off+4:], limit)
	binary.LittleEndian.PutUint64(p[off+8:], base)
}

// vmsaPage builds the initial VMSA of a vCPU that starts at eip, in real
// mode with CS.base = eip & 0xffff0000 and RIP = eip & 0xffff, as KVM
// creates it from QEMU's reset state (or as EC2 does).
func vmsaPage(eip uint32, sevFeatures uint64, sig uint32, vmm VMM) [PageSize]byte {
	csFlags, ssFlags, trFlags := uint16(0x9b), uint16(0x93), uint16(0x8b)
	rdx := uint64(sig)
	mxcsr, fcw := uint32(0x1f80), uint16(0x37f)
	if vmm == VMMEC2 {
		if eip == bspEIP {
			csFlags = 0x9a
		}
		ssFlags, trFlags = 0x92, 0x83
		rdx, mxcsr, fcw = 0, 0, 0
	}
	var p [PageSize]byte
	putSeg(&p, vmsaES, 0, 0x93, 0xffff, 0)
	putSeg(&p, vmsaCS, 0xf000, csFlags, 0xffff, uint64(eip&0xffff0000))
	putSeg(&p, vmsaSS, 0, ssFlags, 0xffff, 0)
	putSeg(&p, vmsaDS, 0, 0x93, 0xffff, 0)
	putSeg(&p, vmsaFS, 0, 0x93, 0xffff, 0)
	putSeg(&p, vmsaGS, 0, 0x93, 0xffff, 0)
	putSeg(&p, vmsaGDTR, 0, 0, 0xffff, 0)
	putSeg(&p, vmsaLDTR, 0, 0x82, 0xffff, 0)
	putSeg(&p, vmsaIDTR, 0, 0, 0xffff, 0)
	putSeg(&p, vmsaTR, 0, trFlags, 0xffff, 0)
	le := binary.LittleEndian
	le.PutUint64(p[vmsaEFER:], 0x1000) // EFER.SVME, set by KVM
	le.PutUint64(p[vmsaCR4:], 0x40)    // CR4.MCE, set by KVM
	le.PutUint64(p[vmsaCR0:], 0x10)
	le.PutUint64(p[vmsaDR7:], 0x400)
	le.PutUint64(p[vmsaDR6:], 0xffff0ff0)
	le.PutUint64(p[vmsaRFLAGS:], 0x2)
	le.PutUint64(p[vmsaRIP:], uint64(eip&0xffff))
	le.PutUint64(p[vmsaGPAT:], 0x0007040600070406) // PAT reset value, AMD APM vol. 2 A.3
	le.PutUint64(p[vmsaRDX:], rdx)
	le.PutUint64(p[vmsaSEVFeatures:], sevFeatures)
	le.PutUint64(p[vmsaXCR0:], 0x1)
	le.PutUint32(p[vmsaMXCSR:], mxcsr)
	le.PutUint16(p[vmsaX87FCW:], fcw)
	return p
}
