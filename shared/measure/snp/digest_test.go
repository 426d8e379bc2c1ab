package snp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

func baseParams() SNPParams {
	return SNPParams{
		OVMF:     amdSevSuffix,
		Kernel:   []byte("kernel image bytes"),
		Initrd:   []byte("initrd bytes"),
		Append:   "console=ttyS0 root=/dev/vda",
		VCPUs:    2,
		VCPUType: "EPYC-Milan",
	}
}

type digestFunc func(SNPParams) ([DigestSize]byte, error)

var digestFuncs = map[string]digestFunc{"SNPLaunchDigest": SNPLaunchDigest, "SimLaunchDigest": SimLaunchDigest}

func TestParamErrors(t *testing.T) {
	tests := map[string]struct {
		edit    func(p *SNPParams)
		wantErr error
	}{
		"no vCPUs":           {edit: func(p *SNPParams) { p.VCPUs = 0 }, wantErr: ErrInvalidVCPUs},
		"negative vCPUs":     {edit: func(p *SNPParams) { p.VCPUs = -1 }, wantErr: ErrInvalidVCPUs},
		"too many vCPUs":     {edit: func(p *SNPParams) { p.VCPUs = MaxVCPUs + 1 }, wantErr: ErrInvalidVCPUs},
		"unknown vCPU type":  {edit: func(p *SNPParams) { p.VCPUType = "EPYC-Zen9" }, wantErr: ErrUnknownVCPUType},
		"empty vCPU type":    {edit: func(p *SNPParams) { p.VCPUType = "" }, wantErr: ErrUnknownVCPUType},
		"unknown VMM":        {edit: func(p *SNPParams) { p.VMMType = "gce" }, wantErr: ErrUnknownVMM},
		"initrd, no kernel":  {edit: func(p *SNPParams) { p.Kernel = nil; p.Append = "" }, wantErr: ErrKernelRequired},
		"append, no kernel":  {edit: func(p *SNPParams) { p.Kernel = nil; p.Initrd = nil }, wantErr: ErrKernelRequired},
		"no firmware":        {edit: func(p *SNPParams) { p.OVMF = nil }, wantErr: ErrFirmwareSize},
		"firmware not pages": {edit: func(p *SNPParams) { p.OVMF = p.OVMF[:PageSize-1] }, wantErr: ErrFirmwareSize},
		"max vCPUs":          {edit: func(p *SNPParams) { p.VCPUs = MaxVCPUs }},
		"no kernel at all":   {edit: func(p *SNPParams) { p.Kernel, p.Initrd, p.Append = nil, nil, "" }},
	}
	for fname, f := range digestFuncs {
		for name, tt := range tests {
			t.Run(fname+"/"+name, func(t *testing.T) {
				p := baseParams()
				tt.edit(&p)
				d, err := f(p)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if err != nil && d != ([DigestSize]byte{}) {
					t.Error("a digest returned with an error")
				}
			})
		}
	}
}

func TestSimRejectsEC2(t *testing.T) {
	p := baseParams()
	p.VMMType = "EC2"
	if _, err := SimLaunchDigest(p); !errors.Is(err, ErrUnknownVMM) {
		t.Fatalf("err = %v, want ErrUnknownVMM", err)
	}
}

// TestSNPFirmwareErrors covers firmware that parses but cannot be launched
// as the parameters ask.
func TestSNPFirmwareErrors(t *testing.T) {
	resetBlock := fwEntry{guidSEVESResetBlock, le32(0x80b004)}
	hashArea := fwEntry{guidSEVHashTableRV, append(le32(0x810c00), le32(0x400)...)}
	secMem := Section{GPA: 0x800000, Size: 0x9000, Type: SectionSNPSecMem}
	hashes := Section{GPA: 0x810000, Size: 0x1000, Type: SectionSNPKernelHashes}
	fixtureWith := func(guid [16]byte, edit func(e []byte)) []byte {
		fw := bytes.Clone(amdSevSuffix)
		off := tableEntry(t, fw, guid)
		edit(fw[off:])
		return fw
	}
	tests := map[string]struct {
		fw       []byte
		noKernel bool
		wantErr  error
	}{
		"synthetic good": {fw: synthFirmware(PageSize, asev(1, secMem, hashes), resetBlock, hashArea)},
		"all 0xff (no table)": {
			fw: bytes.Repeat([]byte{0xff}, 64*PageSize), wantErr: ErrNoSEVMetadata,
		},
		"table without metadata": {fw: synthFirmware(PageSize, nil, resetBlock, hashArea), wantErr: ErrNoSEVMetadata},
		"metadata without sections": {
			fw: synthFirmware(PageSize, asev(1), resetBlock, hashArea), wantErr: ErrNoSEVMetadata,
		},
		"no reset block": {fw: synthFirmware(PageSize, asev(1, secMem, hashes), hashArea), wantErr: ErrNoResetVector},
		"zero reset EIP": {
			fw: fixtureWith(guidSEVESResetBlock, func(e []byte) { binary.LittleEndian.PutUint32(e, 0) }), wantErr: ErrNoResetVector,
		},
		"no hash table entry": {fw: synthFirmware(PageSize, asev(1, secMem, hashes), resetBlock), wantErr: ErrNoKernelHashes},
		"no hash table entry, no kernel": {
			fw: synthFirmware(PageSize, asev(1, secMem, hashes), resetBlock), noKernel: true,
		},
		"zero hash table base": {
			fw: fixtureWith(guidSEVHashTableRV, func(e []byte) { binary.LittleEndian.PutUint32(e, 0) }), wantErr: ErrNoKernelHashes,
		},
		"hash table does not fit its page": {
			fw: fixtureWith(guidSEVHashTableRV, func(e []byte) { binary.LittleEndian.PutUint32(e, 0x810f60) }), wantErr: ErrMalformedFirmware,
		},
		"no kernel hashes section": {
			fw: withSectionType(t, amdSevSuffix, SectionSNPKernelHashes, SectionSNPSecMem), wantErr: ErrNoKernelHashes,
		},
		"unknown section type": {
			fw: withSectionType(t, amdSevSuffix, SectionSVSMCAA, 0x7), wantErr: ErrUnknownSection,
		},
		"secrets section of two pages": {
			fw: synthFirmware(PageSize, asev(1, secMem, hashes, Section{GPA: 0x80d000, Size: 0x2000, Type: SectionSNPSecrets}), resetBlock, hashArea), wantErr: ErrMalformedFirmware,
		},
		"kernel hashes section of two pages": {
			fw: synthFirmware(PageSize, asev(1, secMem, Section{GPA: 0x810000, Size: 0x2000, Type: SectionSNPKernelHashes}), resetBlock, hashArea), wantErr: ErrMalformedFirmware,
		},
		"kernel hashes section of two pages, no kernel": {
			fw: synthFirmware(PageSize, asev(1, secMem, Section{GPA: 0x810000, Size: 0x2000, Type: SectionSNPKernelHashes}), resetBlock, hashArea), noKernel: true, wantErr: ErrMalformedFirmware,
		},
		"CPUID section of two pages": {
			fw: synthFirmware(PageSize, asev(1, secMem, hashes, Section{GPA: 0x80d000, Size: 0x2000, Type: SectionCPUID}), resetBlock, hashArea), wantErr: ErrMalformedFirmware,
		},
		"malformed table": {
			fw: func() []byte {
				fw := bytes.Clone(amdSevSuffix)
				binary.LittleEndian.PutUint16(fw[len(fw)-50:], 10)
				return fw
			}(), wantErr: ErrMalformedFirmware,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := baseParams()
			p.OVMF = tt.fw
			if tt.noKernel {
				p.Kernel, p.Initrd, p.Append = nil, nil, ""
			}
			if _, err := SNPLaunchDigest(p); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestDigestSensitivity: every measured input moves the digest, in both
// definitions; inputs that are not measured do not.
func TestDigestSensitivity(t *testing.T) {
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	variants := map[string]func(p *SNPParams){
		"base":                   func(p *SNPParams) {},
		"kernel first byte":      func(p *SNPParams) { p.Kernel = flip(p.Kernel, 0) },
		"kernel last byte":       func(p *SNPParams) { p.Kernel = flip(p.Kernel, len(p.Kernel)-1) },
		"kernel one byte longer": func(p *SNPParams) { p.Kernel = append(bytes.Clone(p.Kernel), 0) },
		"initrd one byte":        func(p *SNPParams) { p.Initrd = flip(p.Initrd, 3) },
		"no initrd":              func(p *SNPParams) { p.Initrd = nil },
		"cmdline one byte":       func(p *SNPParams) { p.Append = "console=ttyS1 root=/dev/vda" },
		"cmdline trailing space": func(p *SNPParams) { p.Append += " " },
		"empty cmdline":          func(p *SNPParams) { p.Append = "" },
		"firmware first byte":    func(p *SNPParams) { p.OVMF = flip(p.OVMF, 0) },
		"firmware code byte":     func(p *SNPParams) { p.OVMF = flip(p.OVMF, 0x900) },
		"no kernel":              func(p *SNPParams) { p.Kernel, p.Initrd, p.Append = nil, nil, "" },
		"empty kernel":           func(p *SNPParams) { p.Kernel, p.Initrd, p.Append = []byte{}, nil, "" },
		"one vCPU":               func(p *SNPParams) { p.VCPUs = 1 },
		"three vCPUs":            func(p *SNPParams) { p.VCPUs = 3 },
		"EPYC-v4":                func(p *SNPParams) { p.VCPUType = "EPYC-v4" },
		"EPYC-Genoa":             func(p *SNPParams) { p.VCPUType = "EPYC-Genoa" },
		"features 0x21":          func(p *SNPParams) { p.GuestFeatures = 0x21 },
	}
	same := map[string]func(p *SNPParams){
		"features 0 means 0x1":      func(p *SNPParams) { p.GuestFeatures = 0x1 },
		"VMM spelled qemu":          func(p *SNPParams) { p.VMMType = "qemu" },
		"VMM spelled QEMU":          func(p *SNPParams) { p.VMMType = "QEMU" },
		"empty initrd is no initrd": func(p *SNPParams) { p.Initrd = p.Initrd[:0] },
		"same model, other version": func(p *SNPParams) { p.VCPUType = "EPYC-Milan-v2" },
	}
	for fname, f := range digestFuncs {
		t.Run(fname, func(t *testing.T) {
			seen := map[[DigestSize]byte]string{}
			var base [DigestSize]byte
			for name, edit := range variants {
				p := baseParams()
				edit(&p)
				d, err := f(p)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if prev, dup := seen[d]; dup {
					t.Errorf("%q and %q give the same digest", name, prev)
				}
				seen[d] = name
				if name == "base" {
					base = d
				}
			}
			for name, edit := range same {
				p := baseParams()
				edit(&p)
				if name == "empty initrd is no initrd" {
					// Compare an empty initrd with a nil one.
					q := baseParams()
					q.Initrd = nil
					dp, err1 := f(p)
					dq, err2 := f(q)
					if err1 != nil || err2 != nil || dp != dq {
						t.Errorf("%s: %x %v / %x %v", name, dp, err1, dq, err2)
					}
					continue
				}
				d, err := f(p)
				if err != nil || d != base {
					t.Errorf("%s: digest %x, %v; want the base digest", name, d, err)
				}
			}
			// Deterministic, and the inputs are not modified.
			p := baseParams()
			before := fmt.Sprintf("%x|%x|%x", p.OVMF, p.Kernel, p.Initrd)
			d1, _ := f(p)
			d2, _ := f(p)
			if d1 != d2 || fmt.Sprintf("%x|%x|%x", p.OVMF, p.Kernel, p.Initrd) != before {
				t.Error("not deterministic, or inputs modified")
			}
		})
	}
}

// TestSimDiffersFromSNP: the same inputs never give the simulation's digest
// and the hardware one alike.
func TestSimDiffersFromSNP(t *testing.T) {
	p := baseParams()
	a, err := SNPLaunchDigest(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SimLaunchDigest(p)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Error("simulated and SNP digests coincide")
	}
}
