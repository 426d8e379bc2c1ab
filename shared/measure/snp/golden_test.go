package snp

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json")

const goldenPath = "testdata/golden.json"

// goldenEntry is one pinned digest and where its firmware came from.
type goldenEntry struct {
	Firmware       string `json:"firmware"`
	FirmwareSHA256 string `json:"firmware_sha256"`
	// Package is the Debian package and version the firmware came from
	// (empty for firmware that is not installed from a package).
	Package string `json:"package,omitempty"`
	Digest  string `json:"digest"`
}

type goldenFile struct {
	Comment string                 `json:"comment"`
	Cases   map[string]goldenEntry `json:"cases"`
}

// synthBIOS is a deterministic 64 KiB stand-in firmware for the simulation.
func synthBIOS() []byte {
	b := make([]byte, 0, 16*PageSize)
	for i := byte(0); len(b) < 16*PageSize; i++ {
		s := sha512.Sum512([]byte{i})
		b = append(b, s[:]...)
	}
	return b
}

type goldenCase struct {
	firmware string // an absolute path to read, or a label for p.OVMF
	fn       digestFunc
	p        SNPParams
}

func goldenCases() map[string]goldenCase {
	kernel := []byte("measured kernel, golden case")
	initrd := []byte("measured initrd, golden case")
	return map[string]goldenCase{
		"debian-ovmf/snp/no-kernel/1-EPYC-v4/0x1": {
			firmware: debianOVMFPath, fn: SNPLaunchDigest,
			p: SNPParams{VCPUs: 1, VCPUType: "EPYC-v4"},
		},
		"debian-ovmf/snp/no-kernel/4-EPYC-Milan/0x1": {
			firmware: debianOVMFPath, fn: SNPLaunchDigest,
			p: SNPParams{VCPUs: 4, VCPUType: "EPYC-Milan", GuestFeatures: 0x1},
		},
		"debian-ovmf/snp/no-kernel/2-EPYC-Genoa/0x21": {
			firmware: debianOVMFPath, fn: SNPLaunchDigest,
			p: SNPParams{VCPUs: 2, VCPUType: "EPYC-Genoa", GuestFeatures: 0x21},
		},
		"upstream-fixture/snp/kernel/2-EPYC-Milan/0x1": {
			firmware: "ovmf_AmdSev_suffix.bin", fn: SNPLaunchDigest,
			p: SNPParams{OVMF: amdSevSuffix, Kernel: kernel, Initrd: initrd, Append: "console=ttyS0", VCPUs: 2, VCPUType: "EPYC-Milan"},
		},
		"debian-ovmf/sim/kernel/2-EPYC-Milan/0x1": {
			firmware: debianOVMFPath, fn: SimLaunchDigest,
			p: SNPParams{Kernel: kernel, Initrd: initrd, Append: "console=ttyS0", VCPUs: 2, VCPUType: "EPYC-Milan"},
		},
		"debian-seabios-256k/sim/kernel/2-EPYC-Milan/0x1": {
			firmware: debianSeaBIOSPath, fn: SimLaunchDigest,
			p: SNPParams{Kernel: kernel, Initrd: initrd, Append: "console=ttyS0", VCPUs: 2, VCPUType: "EPYC-Milan"},
		},
		"synthetic-bios/sim/kernel/1-EPYC-v4/0x1": {
			firmware: "synthetic", fn: SimLaunchDigest,
			p: SNPParams{OVMF: synthBIOS(), Kernel: kernel, Initrd: initrd, Append: "console=ttyS0", VCPUs: 1, VCPUType: "EPYC-v4"},
		},
		"synthetic-bios/sim/no-kernel/3-EPYC-Genoa/0x1": {
			firmware: "synthetic", fn: SimLaunchDigest,
			p: SNPParams{OVMF: synthBIOS(), VCPUs: 3, VCPUType: "EPYC-Genoa"},
		},
	}
}

// TestGolden pins digests in testdata/golden.json. The Debian firmware cases
// run against the installed packages (ovmf 2022.11-6+deb12u2, seabios
// 1.16.2-1, installed by scripts/install-deps.sh) and fail when the
// installed file is missing or differs from the pinned sha256: a Debian
// point release of the firmware is a visible failure naming both hashes and
// package versions, never a silent skip. These values come from this
// package alone; what makes them trustworthy is that the same code
// reproduces sev-snp-measure's vectors (upstream_test.go), including the Go
// port's, whose firmware tables are exactly Debian's.
func TestGolden(t *testing.T) {
	var g goldenFile
	raw, err := os.ReadFile(goldenPath)
	if err != nil && !*update {
		t.Fatal(err)
	}
	if err == nil {
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Fatal(err)
		}
	}
	if g.Cases == nil {
		g.Cases = map[string]goldenEntry{}
	}
	for name, c := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			p := c.p
			var pkg string
			if filepath.IsAbs(c.firmware) {
				p.OVMF, pkg = installedFirmware(t, c.firmware)
			}
			sum := sha256.Sum256(p.OVMF)
			fwSum := hex.EncodeToString(sum[:])
			d, err := c.fn(p)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				g.Cases[name] = goldenEntry{Firmware: filepath.Base(c.firmware), FirmwareSHA256: fwSum, Package: pkg, Digest: hex.EncodeToString(d[:])}
				return
			}
			want, ok := g.Cases[name]
			if !ok {
				t.Fatalf("no golden value; run go test -run TestGolden -update")
			}
			if want.FirmwareSHA256 != fwSum {
				t.Fatalf("firmware changed: %s (installed: %s) has sha256 %s, the golden digest was pinned for sha256 %s (%s); "+
					"check the new firmware, then refresh with go test ./shared/measure/snp -run TestGolden -update",
					c.firmware, pkg, fwSum, want.FirmwareSHA256, want.Package)
			}
			if got := hex.EncodeToString(d[:]); got != want.Digest {
				t.Errorf("digest\n got %s\nwant %s", got, want.Digest)
			}
		})
	}
	if *update {
		g.Comment = "Launch digests pinned by TestGolden (golden_test.go), computed by this package; " +
			"debian-ovmf: /usr/share/ovmf/OVMF.fd from Debian 12 package ovmf 2022.11-6+deb12u2; " +
			"debian-seabios-256k: /usr/share/seabios/bios-256k.bin from seabios 1.16.2-1; " +
			"upstream-fixture: testdata/ovmf_AmdSev_suffix.bin; synthetic: synthBIOS(). Refresh with -update."
		out, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDebianOVMFRefusesKernel: QEMU would refuse kernel-hashes=on with this
// firmware too (no hash table GUID area); so does SNPLaunchDigest.
func TestDebianOVMFRefusesKernel(t *testing.T) {
	fw := debianOVMF(t)
	_, err := SNPLaunchDigest(SNPParams{OVMF: fw, Kernel: []byte("k"), VCPUs: 1, VCPUType: "EPYC-v4"})
	if !errors.Is(err, ErrNoKernelHashes) {
		t.Fatalf("err = %v, want ErrNoKernelHashes", err)
	}
}

// TestSeaBIOSHasNoSEVMetadata: SeaBIOS cannot be measured the hardware way;
// that is what SimLaunchDigest is for.
func TestSeaBIOSHasNoSEVMetadata(t *testing.T) {
	fw, _ := installedFirmware(t, debianSeaBIOSPath)
	p := SNPParams{OVMF: fw, Kernel: []byte("k"), VCPUs: 1, VCPUType: "EPYC-v4"}
	if _, err := SNPLaunchDigest(p); !errors.Is(err, ErrNoSEVMetadata) {
		t.Fatalf("SNPLaunchDigest err = %v, want ErrNoSEVMetadata", err)
	}
	if _, err := SimLaunchDigest(p); err != nil {
		t.Fatalf("SimLaunchDigest: %v", err)
	}
}

// TestSimDefinition recomputes SimLaunchDigest from its documented
// definition with spec-built PAGE_INFO structures.
func TestSimDefinition(t *testing.T) {
	fw := synthBIOS()
	kernel, initrd, cmdline := []byte("k"), []byte("i"), "c"
	const vcpus = 3
	sig, err := VCPUSignature("EPYC-Milan")
	if err != nil {
		t.Fatal(err)
	}
	ld := make([]byte, 48)
	step := func(pageType byte, gpa uint64, contents []byte) {
		s := sha512.Sum384(specPageInfo(ld, contents, 0x70, pageType, 0, 0, 0, 0, gpa))
		ld = s[:]
	}
	for off := 0; off < len(fw); off += PageSize {
		h := sha512.Sum384(fw[off : off+PageSize])
		step(0x01, 1<<32-uint64(len(fw))+uint64(off), h[:])
	}
	page := make([]byte, PageSize)
	table := HashTable(kernel, initrd, cmdline)
	copy(page[0xc00:], table[:])
	h := sha512.Sum384(page)
	step(0x01, 0x810000, h[:])
	vmsa := vmsaPage(0xfffffff0, 0x1, sig, VMMQEMU)
	hv := sha512.Sum384(vmsa[:])
	for range vcpus {
		step(0x02, 0xFFFFFFFFF000, hv[:])
	}

	got, err := SimLaunchDigest(SNPParams{OVMF: fw, Kernel: kernel, Initrd: initrd, Append: cmdline, VCPUs: vcpus, VCPUType: "EPYC-Milan"})
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got[:]) != hex.EncodeToString(ld) {
		t.Errorf("digest\n got %x\nwant %x", got, ld)
	}
}
