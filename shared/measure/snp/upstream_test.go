package snp

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"testing"
)

// amdSevSuffix is sev-snp-measure's test fixture tests/fixtures/
// ovmf_AmdSev_suffix.bin: the last 4 KiB of an OvmfPkg/AmdSev build. See
// testdata/README.md for where it came from.
//
//go:embed testdata/ovmf_AmdSev_suffix.bin
var amdSevSuffix []byte

const amdSevSuffixSHA256 = "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c"

func mustHex48(t *testing.T, s string) [DigestSize]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != DigestSize {
		t.Fatalf("bad digest literal %q", s)
	}
	return [DigestSize]byte(b)
}

func TestFixtureIntact(t *testing.T) {
	if got := sha256.Sum256(amdSevSuffix); hex.EncodeToString(got[:]) != amdSevSuffixSHA256 {
		t.Fatalf("fixture sha256 = %x, want %s", got, amdSevSuffixSHA256)
	}
}

// TestUpstreamOVMFHash: sev-snp-measure's test_snp_ovmf_hash_full_*
// (calc_snp_ovmf_hash over the fixture): the firmware pages alone.
func TestUpstreamOVMFHash(t *testing.T) {
	const want = "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
	var g gctx
	if err := g.normalPages(fourGiB-uint64(len(amdSevSuffix)), amdSevSuffix); err != nil {
		t.Fatal(err)
	}
	if g.ld != mustHex48(t, want) {
		t.Errorf("OVMF hash = %x, want %s", g.ld, want)
	}
}

// TestUpstreamVectors reproduces the SNP launch digests that
// sev-snp-measure's tests/test_guest.py states for its fixture. The kernel
// and initrd there are /dev/null (empty, but present: non-nil here).
func TestUpstreamVectors(t *testing.T) {
	empty := []byte{}
	tests := map[string]struct {
		vcpus    int
		kernel   []byte
		initrd   []byte
		append   string
		features uint64
		vmm      string
		want     string
	}{
		"test_snp_default": {
			vcpus: 1, kernel: empty, initrd: empty, append: "console=ttyS0 loglevel=7", features: 0x21,
			want: "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977",
		},
		"test_snp_guest_feature_snp_only": {
			vcpus: 1, kernel: empty, initrd: empty, append: "console=ttyS0 loglevel=7", features: 0x1,
			want: "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa",
		},
		"test_snp_ec2_default": {
			vcpus: 1, kernel: empty, initrd: empty, features: 0x21, vmm: "ec2",
			want: "6ae80856486b1396af8c82a40351d6ed76a20c785e9c7fa4ffa27c22d5d6313b4b3b458cd3c9968e6f89fb5d8450d7a6",
		},
		"test_snp_ec2_feature_snp_only": {
			vcpus: 1, kernel: empty, initrd: empty, features: 0x1, vmm: "ec2",
			want: "7d3756157c805bf6adf617064c8552e8c1688fa1c8756f11cbf56ba5d25c9270fb69c0505c1cbe1c5c66c0e34c6ed3be",
		},
		"test_snp_without_kernel_default": {
			vcpus: 1, features: 0x21,
			want: "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b",
		},
		"test_snp_without_kernel_feature_snp_only": {
			vcpus: 1, features: 0x1,
			want: "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d",
		},
		"test_snp_with_multiple_vcpus_default": {
			vcpus: 4, kernel: empty, initrd: empty, features: 0x21,
			want: "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942",
		},
		"test_snp_with_multiple_vcpus_feature_snp_only": {
			vcpus: 4, kernel: empty, initrd: empty, features: 0x1,
			want: "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := SNPLaunchDigest(SNPParams{
				OVMF: amdSevSuffix, Kernel: tt.kernel, Initrd: tt.initrd, Append: tt.append,
				VCPUs: tt.vcpus, VCPUType: "EPYC-v4", GuestFeatures: tt.features, VMMType: tt.vmm,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got != mustHex48(t, tt.want) {
				t.Errorf("digest = %x\nwant      %s", got, tt.want)
			}
		})
	}
}

// TestUpstreamSeededVectors: sev-snp-measure's test_snp_ovmf_hash_gen_*,
// which start the chain from a precomputed firmware digest
// ("--snp-ovmf-hash") and then use only the fixture's tables.
func TestUpstreamSeededVectors(t *testing.T) {
	const seed = "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
	tests := map[string]struct {
		features uint64
		want     string
	}{
		"test_snp_ovmf_hash_gen_default": {
			features: 0x21,
			want:     "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198",
		},
		"test_snp_ovmf_hash_gen_feature_snp_only": {
			features: 0x1,
			want:     "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5",
		},
	}
	o, err := ParseOVMF(amdSevSuffix)
	if err != nil {
		t.Fatal(err)
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := SNPParams{OVMF: amdSevSuffix, Kernel: []byte{}, Initrd: []byte{}, VCPUs: 1, VCPUType: "EPYC-v4", GuestFeatures: tt.features}
			l, err := p.resolve()
			if err != nil {
				t.Fatal(err)
			}
			g := gctx{ld: mustHex48(t, seed)}
			if err := snpAfterFirmware(&g, o, &p, l); err != nil {
				t.Fatal(err)
			}
			if g.ld != mustHex48(t, tt.want) {
				t.Errorf("digest = %x\nwant      %s", g.ld, tt.want)
			}
		})
	}
}

// TestGoPortVectors: virtee/sev-snp-measure-go's guest/testdata/
// ovmf_img_{1,2}.json and TestLaunchDigestFromMetadataWrapper: a firmware
// digest, its SEV metadata sections and reset EIP given as data, two vCPUs,
// EC2, guest features 0x1, no kernel. Those sections and that reset EIP are
// exactly the ones of Debian 12's OVMF.fd (see TestDebianOVMFTables).
func TestGoPortVectors(t *testing.T) {
	sections := []Section{
		{GPA: 0x800000, Size: 0x9000, Type: SectionSNPSecMem},
		{GPA: 0x80a000, Size: 0x3000, Type: SectionSNPSecMem},
		{GPA: 0x80d000, Size: 0x1000, Type: SectionSNPSecrets},
		{GPA: 0x80e000, Size: 0x1000, Type: SectionCPUID},
		{GPA: 0x80f000, Size: 0x11000, Type: SectionSNPSecMem},
	}
	tests := map[string]struct{ seed, want string }{
		"ovmf_img_1": {
			seed: "a58211791a556a630a4319dc9e2ea96cc0e9784dd9f20a4fadf81b26c98d163fcdcb6703884bbbb80d7b1de45b3d84d0",
			want: "4c6e33087d08fa770259484dddbef367086a15c3e2cf10038dc97229d39c942671c2e22b300178f8de594a3f2fa59303",
		},
		"ovmf_img_2": {
			seed: "2027a27bb9f7acfd280e4c7bd68a73973b94bf0756e5b282e004b9395f597b8d0eb4defa7d8f6549375aa4d2b146f0f3",
			want: "c2c84b9364fc9f0f54b04534768c860c6e0e386ad98b96e8b98eca46ac8971d05c531ba48373f054c880cfd1f4a0a84e",
		},
	}
	o := &OVMF{
		table:    map[[16]byte][]byte{guidSEVESResetBlock: {0x04, 0xb0, 0x80, 0x00}},
		sections: sections,
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := SNPParams{VCPUs: 2, VCPUType: "EPYC-v4", GuestFeatures: 0x1, VMMType: "EC2"}
			l, err := p.resolve()
			if err != nil {
				t.Fatal(err)
			}
			g := gctx{ld: mustHex48(t, tt.seed)}
			if err := snpAfterFirmware(&g, o, &p, l); err != nil {
				t.Fatal(err)
			}
			if g.ld != mustHex48(t, tt.want) {
				t.Errorf("digest = %x\nwant      %s", g.ld, tt.want)
			}
		})
	}
}

// TestUpstreamKernelWithoutHashesSection: sev-snp-measure refuses a kernel
// with a firmware that has no SNP_KERNEL_HASHES section
// (test_snp_with_ovmfx64_and_kernel_should_fail); so does this package.
func TestUpstreamKernelWithoutHashesSection(t *testing.T) {
	fw := withSectionType(t, amdSevSuffix, SectionSNPKernelHashes, SectionSNPSecMem)
	_, err := SNPLaunchDigest(SNPParams{OVMF: fw, Kernel: []byte{}, VCPUs: 1, VCPUType: "EPYC-v4"})
	if !errors.Is(err, ErrNoKernelHashes) {
		t.Fatalf("err = %v, want ErrNoKernelHashes", err)
	}
	if _, err := SNPLaunchDigest(SNPParams{OVMF: fw, VCPUs: 1, VCPUType: "EPYC-v4"}); err != nil {
		t.Fatalf("without a kernel: %v", err)
	}
}
