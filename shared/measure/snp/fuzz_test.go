package snp

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseOVMF feeds hostile firmware images to the parser and, when they
// parse, to both digest functions: nothing may panic, and every error must
// be one of the package's sentinels. The input is tried as given and placed
// at the end of a page-aligned image, so the footer table parser sees it.
func FuzzParseOVMF(f *testing.F) {
	f.Add(amdSevSuffix)
	f.Add(amdSevSuffix[len(amdSevSuffix)-0x600:])
	f.Add(amdSevSuffix[len(amdSevSuffix)-50:])
	resetBlock := fwEntry{guidSEVESResetBlock, le32(0x80b004)}
	hashArea := fwEntry{guidSEVHashTableRV, append(le32(0x810c00), le32(0x400)...)}
	f.Add(synthFirmware(PageSize, asev(1,
		Section{GPA: 0x800000, Size: 0x1000, Type: SectionSNPSecMem},
		Section{GPA: 0x810000, Size: 0x1000, Type: SectionSNPKernelHashes},
		Section{GPA: 0x80d000, Size: 0x1000, Type: SectionSNPSecrets},
		Section{GPA: 0x80e000, Size: 0x1000, Type: SectionCPUID},
	), resetBlock, hashArea))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*PageSize {
			return
		}
		img := bytes.Repeat([]byte{0xff}, (len(data)+PageSize-1)/PageSize*PageSize)
		copy(img[len(img)-len(data):], data)
		for _, fw := range [][]byte{data, img} {
			o, err := ParseOVMF(fw)
			if err != nil {
				if !errors.Is(err, ErrFirmwareSize) && !errors.Is(err, ErrMalformedFirmware) {
					t.Fatalf("ParseOVMF: unexpected error %v", err)
				}
				continue
			}
			_, _ = o.ResetEIP()
			_, _, _ = o.HashTableGPA()
			_ = o.Sections()
			for _, k := range [][]byte{nil, {}} {
				p := SNPParams{OVMF: fw, Kernel: k, VCPUs: 2, VCPUType: "EPYC-v4"}
				for _, vmm := range []string{"QEMU", "EC2"} {
					p.VMMType = vmm
					if _, err := SNPLaunchDigest(p); err != nil && !isSentinel(err) {
						t.Fatalf("SNPLaunchDigest: unexpected error %v", err)
					}
				}
				p.VMMType = ""
				if _, err := SimLaunchDigest(p); err != nil && !isSentinel(err) {
					t.Fatalf("SimLaunchDigest: unexpected error %v", err)
				}
			}
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrFirmwareSize, ErrMalformedFirmware, ErrNoSEVMetadata, ErrNoResetVector,
		ErrNoKernelHashes, ErrUnknownSection, ErrUnknownVCPUType, ErrUnknownVMM, ErrInvalidVCPUs, ErrKernelRequired} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
