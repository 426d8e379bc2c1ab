package snp

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkSNPLaunchDigest measures a 4 MiB OVMF-sized image (the fixture's
// tables at the end of 0xff filler) with an 8 MiB kernel and a 32 MiB
// initrd, the sizes hostd and the image tool handle per guest.
func BenchmarkSNPLaunchDigest(b *testing.B) {
	fw := append(bytes.Repeat([]byte{0xff}, 4<<20-len(amdSevSuffix)), amdSevSuffix...)
	p := SNPParams{
		OVMF: fw, Kernel: bytes.Repeat([]byte{0x4b}, 8<<20), Initrd: bytes.Repeat([]byte{0x49}, 32<<20),
		Append: "console=ttyS0", VCPUs: 4, VCPUType: "EPYC-Milan",
	}
	for name, f := range map[string]digestFunc{"SNP": SNPLaunchDigest, "Sim": SimLaunchDigest} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(p.OVMF) + len(p.Kernel) + len(p.Initrd)))
			for b.Loop() {
				if _, err := f(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func ExampleSNPLaunchDigest() {
	d, err := SNPLaunchDigest(SNPParams{
		OVMF:     amdSevSuffix, // an OVMF image; here sev-snp-measure's 4 KiB test fixture
		Kernel:   []byte{},     // the -kernel file (empty here, like /dev/null)
		Initrd:   []byte{},
		Append:   "console=ttyS0 loglevel=7",
		VCPUs:    1,
		VCPUType: "EPYC-v4",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%x\n", d)
	// Output: 6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa
}
