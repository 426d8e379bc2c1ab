package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/confidant-cvm/confidant/shared/measure/snp"
)

const amdSevSuffix = "testdata/ovmf_AmdSev_suffix.bin"

// writeFile writes b to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSimMatchesHostd: the simulated digest is snp.SimLaunchDigest over the
// bytes with exactly hostd's parameters (hostd/internal/guest prepareBoot:
// OVMF = SeaBIOS bytes, Kernel, Initrd, Append = cmdline verbatim, VCPUs,
// VCPUType = "EPYC-v4", GuestFeatures and VMMType left zero).
func TestSimMatchesHostd(t *testing.T) {
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinuz", []byte("not really a kernel, but measured all the same"))
	initrdBytes := []byte("initrd bytes \x00\x01\x02")
	initrd := writeFile(t, dir, "initrd.img", initrdBytes)
	const cmdline = "console=ttyS0 panic=-1 "
	fw := mustRead(t, DefaultSimFirmware)

	for _, vcpus := range []int{1, 2, 4} {
		got, err := Compute(Inputs{Kind: KindSim, Kernel: kernel, Initrd: initrd, Cmdline: cmdline, VCPUs: vcpus})
		if err != nil {
			t.Fatal(err)
		}
		want, err := snp.SimLaunchDigest(snp.SNPParams{
			OVMF: fw, Kernel: mustRead(t, kernel), Initrd: initrdBytes, Append: cmdline,
			VCPUs: vcpus, VCPUType: "EPYC-v4",
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Measurement != hex.EncodeToString(want[:]) {
			t.Errorf("%d vCPUs: measurement %s, want %x", vcpus, got.Measurement, want)
		}
		fwSum := sha256.Sum256(fw)
		if got.Firmware.Path != DefaultSimFirmware || got.Firmware.SHA256 != hex.EncodeToString(fwSum[:]) ||
			got.VCPUType != SimVCPUType || got.VMMType != "QEMU" || got.GuestFeatures != 1 ||
			got.Kernel == nil || got.Kernel.Path != kernel || got.Initrd == nil || got.Initrd.Size != int64(len(initrdBytes)) ||
			got.Cmdline != cmdline || got.VCPUs != vcpus {
			t.Errorf("measurement record = %+v", got)
		}
	}

	// Each input is covered: one changed byte, or a changed parameter,
	// changes the digest.
	base, err := Compute(Inputs{Kind: KindSim, Kernel: kernel, Initrd: initrd, Cmdline: cmdline, VCPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), initrdBytes...)
	flipped[3] ^= 1
	otherInitrd := writeFile(t, dir, "initrd2.img", flipped)
	fw2 := append([]byte(nil), fw...)
	fw2[len(fw2)-100] ^= 1
	otherFW := writeFile(t, dir, "bios.bin", fw2)
	for name, in := range map[string]Inputs{
		"initrd byte":    {Kind: KindSim, Kernel: kernel, Initrd: otherInitrd, Cmdline: cmdline, VCPUs: 2},
		"cmdline space":  {Kind: KindSim, Kernel: kernel, Initrd: initrd, Cmdline: cmdline[:len(cmdline)-1], VCPUs: 2},
		"vcpus":          {Kind: KindSim, Kernel: kernel, Initrd: initrd, Cmdline: cmdline, VCPUs: 3},
		"firmware":       {Kind: KindSim, Firmware: otherFW, Kernel: kernel, Initrd: initrd, Cmdline: cmdline, VCPUs: 2},
		"no initrd":      {Kind: KindSim, Kernel: kernel, Cmdline: cmdline, VCPUs: 2},
		"guest features": {Kind: KindSim, Kernel: kernel, Initrd: initrd, Cmdline: cmdline, VCPUs: 2, GuestFeatures: 0x21},
	} {
		m, err := Compute(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Measurement == base.Measurement {
			t.Errorf("%s: the measurement did not change", name)
		}
	}
}

// TestSNPUpstreamVector: sev-snp-measure's test_snp_default over its OVMF
// fixture, an empty kernel and initrd (/dev/null there).
func TestSNPUpstreamVector(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty", nil)
	m, err := Compute(Inputs{Firmware: amdSevSuffix, Kernel: empty, Initrd: empty,
		Cmdline: "console=ttyS0 loglevel=7", VCPUs: 1, GuestFeatures: 0x21})
	if err != nil {
		t.Fatal(err)
	}
	const want = "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"
	if m.Kind != KindSNP || m.Measurement != want || m.VCPUType != "EPYC-v4" {
		t.Errorf("measurement = %+v, want %s", m, want)
	}
	// Without a kernel: test_snp_without_kernel_default.
	m, err = Compute(Inputs{Kind: KindSNP, Firmware: amdSevSuffix, VCPUs: 1, GuestFeatures: 0x21})
	if err != nil {
		t.Fatal(err)
	}
	if m.Measurement != "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b" || m.Kernel != nil {
		t.Errorf("measurement without kernel = %+v", m)
	}
}

func TestComputeRefuses(t *testing.T) {
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinuz", []byte("k"))
	tests := map[string]struct {
		in      Inputs
		wantErr error
	}{
		"unknown kind":           {in: Inputs{Kind: "tdx", Firmware: amdSevSuffix, VCPUs: 1}, wantErr: ErrInput},
		"snp without firmware":   {in: Inputs{VCPUs: 1}, wantErr: ErrInput},
		"no vcpus":               {in: Inputs{Kind: KindSim, Kernel: kernel}, wantErr: ErrInput},
		"too many vcpus":         {in: Inputs{Kind: KindSim, Kernel: kernel, VCPUs: snp.MaxVCPUs + 1}, wantErr: ErrInput},
		"unknown vcpu type":      {in: Inputs{Firmware: amdSevSuffix, VCPUs: 1, VCPUType: "Skylake"}, wantErr: snp.ErrUnknownVCPUType},
		"sim with other vcpu":    {in: Inputs{Kind: KindSim, Kernel: kernel, VCPUs: 1, VCPUType: "EPYC-Milan"}, wantErr: ErrInput},
		"sim under EC2":          {in: Inputs{Kind: KindSim, Kernel: kernel, VCPUs: 1, VMMType: "ec2"}, wantErr: ErrInput},
		"unknown vmm":            {in: Inputs{Firmware: amdSevSuffix, VCPUs: 1, VMMType: "xen"}, wantErr: snp.ErrUnknownVMM},
		"cmdline without kernel": {in: Inputs{Kind: KindSim, Cmdline: "console=ttyS0", VCPUs: 1}, wantErr: snp.ErrKernelRequired},
		"initrd without kernel":  {in: Inputs{Kind: KindSim, Initrd: kernel, VCPUs: 1}, wantErr: snp.ErrKernelRequired},
		"missing kernel":         {in: Inputs{Kind: KindSim, Kernel: filepath.Join(dir, "absent"), VCPUs: 1}, wantErr: os.ErrNotExist},
		"missing firmware":       {in: Inputs{Firmware: filepath.Join(dir, "absent"), VCPUs: 1}, wantErr: os.ErrNotExist},
		"firmware not OVMF":      {in: Inputs{Firmware: DefaultSimFirmware, Kernel: kernel, VCPUs: 1}, wantErr: snp.ErrNoSEVMetadata},
		"firmware not pages":     {in: Inputs{Kind: KindSim, Firmware: kernel, Kernel: kernel, VCPUs: 1}, wantErr: snp.ErrFirmwareSize},
		"debian OVMF, kernel":    {in: Inputs{Firmware: "/usr/share/ovmf/OVMF.fd", Kernel: kernel, VCPUs: 1}, wantErr: snp.ErrNoKernelHashes},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := Compute(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Compute = %+v, %v; want %v", m, err, tc.wantErr)
			}
		})
	}
}
