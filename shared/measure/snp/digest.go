package snp

import (
	"fmt"
)

// MaxVCPUs bounds the vCPU count (QEMU's largest x86 machines).
const MaxVCPUs = 4096

// DefaultGuestFeatures is the SEV_FEATURES value used when SNPParams leaves
// it zero: SNPActive only, what a Linux 6.8+ KVM host sets by default and
// sev-snp-measure's default.
const DefaultGuestFeatures = 0x1

// SNPParams describes one guest launch.
type SNPParams struct {
	// OVMF is the firmware image (for SimLaunchDigest: any firmware, e.g.
	// SeaBIOS). It is read, never modified.
	OVMF []byte
	// Kernel is the -kernel file. nil means no measured direct boot
	// (kernel-hashes off): SNP_KERNEL_HASHES sections are then measured as
	// zero pages. A non-nil empty slice is an empty kernel.
	Kernel []byte
	// Initrd is the -initrd file; nil or empty means none (hashed as an
	// empty buffer, as QEMU does).
	Initrd []byte
	// Append is the -append command line, without the trailing NUL.
	Append string
	// VCPUs is the number of vCPUs, 1..MaxVCPUs.
	VCPUs int
	// VCPUType is the QEMU CPU model name, e.g. "EPYC-v4", "EPYC-Milan",
	// "EPYC-Genoa"; see VCPUSignature.
	VCPUType string
	// GuestFeatures is the VMSA SEV_FEATURES value; 0 means
	// DefaultGuestFeatures (0x1).
	GuestFeatures uint64
	// VMMType is "QEMU" (the default when empty) or "EC2".
	VMMType string
}

// launch is an SNPParams checked and resolved.
type launch struct {
	sig      uint32
	features uint64
	vmm      VMM
}

func (p *SNPParams) resolve() (launch, error) {
	var l launch
	if p.VCPUs < 1 || p.VCPUs > MaxVCPUs {
		return l, fmt.Errorf("%d vCPUs (want 1..%d): %w", p.VCPUs, MaxVCPUs, ErrInvalidVCPUs)
	}
	sig, err := VCPUSignature(p.VCPUType)
	if err != nil {
		return l, err
	}
	vmm, err := ParseVMM(p.VMMType)
	if err != nil {
		return l, err
	}
	if p.Kernel == nil && (len(p.Initrd) > 0 || p.Append != "") {
		return l, ErrKernelRequired
	}
	l = launch{sig: sig, features: p.GuestFeatures, vmm: vmm}
	if l.features == 0 {
		l.features = DefaultGuestFeatures
	}
	return l, nil
}

// SNPLaunchDigest computes the SEV-SNP launch digest (the report's
// MEASUREMENT) of an OVMF guest started by QEMU (or EC2) with the given
// kernel, initrd and command line measured through kernel-hashes=on. It is
// sev-snp-measure's "--mode snp" computation; see the package doc for the
// chain. Errors: ErrFirmwareSize, ErrMalformedFirmware, ErrNoSEVMetadata,
// ErrNoResetVector, ErrNoKernelHashes, ErrUnknownSection,
// ErrUnknownVCPUType, ErrUnknownVMM, ErrInvalidVCPUs, ErrKernelRequired.
func SNPLaunchDigest(p SNPParams) ([DigestSize]byte, error) {
	l, err := p.resolve()
	if err != nil {
		return [DigestSize]byte{}, err
	}
	o, err := ParseOVMF(p.OVMF)
	if err != nil {
		return [DigestSize]byte{}, err
	}
	var g gctx
	if err := g.normalPages(o.GPA(), o.Data()); err != nil {
		return [DigestSize]byte{}, err
	}
	if err := snpAfterFirmware(&g, o, &p, l); err != nil {
		return [DigestSize]byte{}, err
	}
	return g.ld, nil
}

// snpAfterFirmware extends g with everything after the firmware pages: the
// metadata sections and the VMSAs. Split out so tests can start from
// sev-snp-measure's precomputed firmware digests ("--snp-ovmf-hash").
func snpAfterFirmware(g *gctx, o *OVMF, p *SNPParams, l launch) error {
	if len(o.sections) == 0 {
		return ErrNoSEVMetadata
	}
	apEIP, err := o.ResetEIP()
	if err != nil {
		return err
	}
	var table *[HashTableSize]byte
	var tableGPA uint32
	if p.Kernel != nil {
		if !o.HasSection(SectionSNPKernelHashes) {
			return fmt.Errorf("no SNP_KERNEL_HASHES section: %w", ErrNoKernelHashes)
		}
		if tableGPA, _, err = o.HashTableGPA(); err != nil {
			return err
		}
		t := HashTable(p.Kernel, p.Initrd, p.Append)
		table = &t
	}
	for _, s := range o.sections {
		gpa := uint64(s.GPA)
		switch s.Type {
		case SectionSNPSecMem, SectionSVSMCAA:
			g.emptyPages(PageZero, gpa, uint64(s.Size))
		case SectionSNPSecrets:
			if s.Size != PageSize {
				return fmt.Errorf("SNP_SECRETS section of 0x%x bytes: %w", s.Size, ErrMalformedFirmware)
			}
			g.emptyPages(PageSecrets, gpa, PageSize)
		case SectionCPUID:
			if s.Size != PageSize {
				return fmt.Errorf("CPUID section of 0x%x bytes: %w", s.Size, ErrMalformedFirmware)
			}
			if l.vmm != VMMEC2 {
				g.emptyPages(PageCPUID, gpa, PageSize)
			}
		case SectionSNPKernelHashes:
			// sev-snp-measure requires a single page; a larger region would
			// also be measured (QEMU fills it all), so refuse rather than guess.
			if s.Size != PageSize {
				return fmt.Errorf("SNP_KERNEL_HASHES section of 0x%x bytes: %w", s.Size, ErrMalformedFirmware)
			}
			if p.Kernel == nil {
				g.emptyPages(PageZero, gpa, PageSize)
				continue
			}
			r, err := hashesRegion(table, tableGPA, s.Size)
			if err != nil {
				return err
			}
			if err := g.normalPages(gpa, r); err != nil {
				return err
			}
		default:
			return fmt.Errorf("section %v at 0x%x: %w", s.Type, s.GPA, ErrUnknownSection)
		}
	}
	if l.vmm == VMMEC2 {
		// EC2 adds the CPUID page last.
		for _, s := range o.sections {
			if s.Type == SectionCPUID {
				g.emptyPages(PageCPUID, uint64(s.GPA), PageSize)
			}
		}
	}
	addVMSAs(g, bspEIP, apEIP, p.VCPUs, l)
	return nil
}

// addVMSAs measures one VMSA page per vCPU: the first starts at bspEIP, the
// others at apEIP.
func addVMSAs(g *gctx, bsp, ap uint32, vcpus int, l launch) {
	bspPage := vmsaPage(bsp, l.features, l.sig, l.vmm)
	g.vmsaPage(&bspPage)
	if vcpus < 2 {
		return
	}
	apPage := vmsaPage(ap, l.features, l.sig, l.vmm)
	for range vcpus - 1 {
		g.vmsaPage(&apPage)
	}
}

// Where SimLaunchDigest places the kernel hashes page: the page and page
// offset that the OVMF AmdSev build (edk2-stable202405) reserves for QEMU's
// SEV hash table, so that the page's bytes are the ones QEMU would measure
// for the same kernel, initrd and command line on hardware.
const (
	SimHashesPageGPA     = 0x0081_0000
	SimHashesTableOffset = 0xc00
)

// SimLaunchDigest is the simulated TEE's launch digest, for guests that
// QEMU boots without SEV (under TCG) with a firmware that has no SEV
// metadata, typically SeaBIOS. It is this project's definition, not AMD's:
// no real SNP report ever carries it. It uses the same GCTX.LD chaining
// (SHA-384 over PAGE_INFO) as the hardware, over:
//
//  1. every page of p.OVMF (any firmware image, a whole number of pages) as
//     NORMAL pages at its load address, the image ending at 4 GiB;
//  2. one page at SimHashesPageGPA: a NORMAL page holding HashTable(kernel,
//     initrd, command line) at offset SimHashesTableOffset and zeros
//     elsewhere, or a ZERO page when p.Kernel is nil;
//  3. one VMSA page per vCPU, built exactly as SNPLaunchDigest builds the
//     QEMU bootstrap processor's (reset vector 0xfffffff0, the vCPU type's
//     CPUID signature, the guest features), for every vCPU: without an
//     SEV-ES reset block the application processors start at the reset
//     vector too.
//
// The digest therefore changes with any byte of the firmware, the kernel,
// the initrd or the command line, and with the vCPU count, the vCPU type
// and the guest features. Only the QEMU VMM type is accepted. Errors: as
// SNPLaunchDigest, less the ones about OVMF tables.
func SimLaunchDigest(p SNPParams) ([DigestSize]byte, error) {
	l, err := p.resolve()
	if err != nil {
		return [DigestSize]byte{}, err
	}
	if l.vmm != VMMQEMU {
		return [DigestSize]byte{}, fmt.Errorf("simulated launch with VMM %q: %w", p.VMMType, ErrUnknownVMM)
	}
	if err := checkFirmwareSize(len(p.OVMF)); err != nil {
		return [DigestSize]byte{}, err
	}
	var g gctx
	if err := g.normalPages(fourGiB-uint64(len(p.OVMF)), p.OVMF); err != nil {
		return [DigestSize]byte{}, err
	}
	if p.Kernel == nil {
		g.emptyPages(PageZero, SimHashesPageGPA, PageSize)
	} else {
		t := HashTable(p.Kernel, p.Initrd, p.Append)
		page, err := hashesRegion(&t, SimHashesTableOffset, PageSize)
		if err != nil {
			return [DigestSize]byte{}, err
		}
		if err := g.normalPages(SimHashesPageGPA, page); err != nil {
			return [DigestSize]byte{}, err
		}
	}
	addVMSAs(&g, bspEIP, bspEIP, p.VCPUs, l)
	return g.ld, nil
}
