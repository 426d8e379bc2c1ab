package cli

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/shared/measure/snp"
)

// amdSevSuffix is sev-snp-measure's OVMF AmdSev fixture (see
// images/internal/measure/testdata/README.md).
const amdSevSuffix = "../measure/testdata/ovmf_AmdSev_suffix.bin"

type bootFiles struct {
	dir, kernel, initrd string
	kernelBytes         []byte
	initrdBytes         []byte
}

func newBootFiles(t *testing.T) bootFiles {
	t.Helper()
	dir := t.TempDir()
	b := bootFiles{dir: dir, kernel: filepath.Join(dir, "vmlinuz"), initrd: filepath.Join(dir, "initrd.img"),
		kernelBytes: []byte("a kernel image, for the hash only"), initrdBytes: []byte("an initrd \x00\x01 for the hash only")}
	if err := os.WriteFile(b.kernel, b.kernelBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.initrd, b.initrdBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// hostdDigest computes the simulated digest the way confidant-hostd does
// (hostd/internal/guest prepareBoot): snp.SimLaunchDigest over the SeaBIOS,
// kernel and initrd bytes, the cmdline verbatim, the spec's vCPU count and
// vCPU type EPYC-v4, other fields zero.
func hostdDigest(t *testing.T, kernel, initrd []byte, cmdline string, vcpus int) string {
	t.Helper()
	bios, err := os.ReadFile("/usr/share/seabios/bios-256k.bin")
	if err != nil {
		t.Fatal(err)
	}
	d, err := snp.SimLaunchDigest(snp.SNPParams{OVMF: bios, Kernel: kernel, Initrd: initrd, Append: cmdline, VCPUs: vcpus, VCPUType: "EPYC-v4"})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(d[:])
}

func TestMeasureSimMatchesHostd(t *testing.T) {
	b := newBootFiles(t)
	const cmdline = "console=ttyS0 panic=-1"
	for _, vcpus := range []string{"1", "2", "8"} {
		stdout, stderr, err := runStreams(t, "measure", "--sim", "--kernel", b.kernel, "--initrd", b.initrd,
			"--append", cmdline, "--vcpus", vcpus)
		if err != nil {
			t.Fatalf("measure: %v\n%s", err, stderr)
		}
		n := map[string]int{"1": 1, "2": 2, "8": 8}[vcpus]
		if want := hostdDigest(t, b.kernelBytes, b.initrdBytes, cmdline, n); stdout != want+"\n" {
			t.Errorf("%s vCPUs: measure printed %q, hostd computes %s", vcpus, stdout, want)
		}
	}

	base, _, err := runStreams(t, "measure", "--sim", "--kernel", b.kernel, "--initrd", b.initrd, "--append", cmdline, "--vcpus", "2")
	if err != nil {
		t.Fatal(err)
	}
	// One changed initrd byte changes the measurement.
	flipped := append([]byte(nil), b.initrdBytes...)
	flipped[len(flipped)-1] ^= 0x80
	other := filepath.Join(b.dir, "initrd2.img")
	if err := os.WriteFile(other, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	changed, _, err := runStreams(t, "measure", "--sim", "--kernel", b.kernel, "--initrd", other, "--append", cmdline, "--vcpus", "2")
	if err != nil {
		t.Fatal(err)
	}
	if changed == base {
		t.Error("one changed initrd byte left the measurement unchanged")
	}
	if want := hostdDigest(t, b.kernelBytes, flipped, cmdline, 2); changed != want+"\n" {
		t.Errorf("changed initrd: %q, want %s", changed, want)
	}
	// So does the command line (hostd appends nothing to it).
	spaced, _, err := runStreams(t, "measure", "--sim", "--kernel", b.kernel, "--initrd", b.initrd, "--append", cmdline+" ", "--vcpus", "2")
	if err != nil {
		t.Fatal(err)
	}
	if spaced == base {
		t.Error("a changed command line left the measurement unchanged")
	}

	// JSON: the same measurement, with the inputs.
	js, _, err := runStreams(t, "measure", "--sim", "--kernel", b.kernel, "--initrd", b.initrd, "--append", cmdline,
		"--vcpus", "2", "--output-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var m measure.Measurement
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatalf("json output %q: %v", js, err)
	}
	if m.Measurement+"\n" != base || m.Kind != measure.KindSim || m.VCPUs != 2 || m.VCPUType != "EPYC-v4" ||
		m.Cmdline != cmdline || m.Firmware.Path != measure.DefaultSimFirmware || m.Initrd == nil || m.Initrd.Path != b.initrd {
		t.Errorf("json output = %+v", m)
	}
	var raw map[string]any
	_ = json.Unmarshal([]byte(js), &raw)
	for _, key := range []string{"kind", "measurement", "firmware", "kernel", "initrd", "cmdline", "vcpus", "vcpu_type", "guest_features", "vmm_type"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("json output lacks %q", key)
		}
	}

	// From a manifest; a flag overrides it.
	man := filepath.Join(b.dir, "manifest.json")
	if err := os.WriteFile(man, []byte(`{"kernel":"vmlinuz","initrd":"initrd.img","cmdline":"console=ttyS0 panic=-1","os_disk":"os.img","extra":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	fromManifest, stderr, err := runStreams(t, "measure", "--sim", "--manifest", man, "--vcpus", "2")
	if err != nil || fromManifest != base {
		t.Errorf("measure --manifest = %q, %v (%s); want %q", fromManifest, err, stderr, base)
	}
	overridden, _, err := runStreams(t, "measure", "--sim", "--manifest", man, "--initrd", other, "--vcpus", "2")
	if err != nil || overridden != changed {
		t.Errorf("measure --manifest --initrd = %q, %v; want %q", overridden, err, changed)
	}
}

// TestMeasureSNP: the SEV-SNP digest, checked against sev-snp-measure's
// published test_snp_default vector for its OVMF fixture.
func TestMeasureSNP(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runStreams(t, "measure", "--ovmf", amdSevSuffix, "--kernel", empty, "--initrd", empty,
		"--append", "console=ttyS0 loglevel=7", "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--guest-features", "0x21")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	const want = "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"
	if stdout != want+"\n" {
		t.Errorf("measure = %q, want %s", stdout, want)
	}
	// --firmware is the same as --ovmf without --sim.
	stdout, _, err = runStreams(t, "measure", "--firmware", amdSevSuffix, "--kernel", empty, "--initrd", empty,
		"--append", "console=ttyS0 loglevel=7", "--vcpus", "1", "--guest-features", "33")
	if err != nil || stdout != want+"\n" {
		t.Errorf("measure --firmware = %q, %v", stdout, err)
	}
}

func TestMeasureRefuses(t *testing.T) {
	b := newBootFiles(t)
	tests := map[string]struct {
		args    []string
		wantErr error
		wantOut string
	}{
		"bad format":           {args: []string{"--sim", "--kernel", b.kernel, "--vcpus", "1", "--output-format", "yaml"}, wantErr: ErrUsage},
		"no vcpus":             {args: []string{"--sim", "--kernel", b.kernel}, wantErr: ErrUsage, wantOut: "--vcpus is required"},
		"zero vcpus":           {args: []string{"--sim", "--kernel", b.kernel, "--vcpus", "0"}, wantErr: measure.ErrInput},
		"sim with another cpu": {args: []string{"--sim", "--kernel", b.kernel, "--vcpus", "1", "--vcpu-type", "EPYC-Milan"}, wantErr: measure.ErrInput},
		"unknown cpu":          {args: []string{"--ovmf", amdSevSuffix, "--vcpus", "1", "--vcpu-type", "Haswell"}, wantErr: snp.ErrUnknownVCPUType},
		"no firmware":          {args: []string{"--kernel", b.kernel, "--vcpus", "1"}, wantErr: measure.ErrInput},
		"ovmf and sim":         {args: []string{"--sim", "--ovmf", amdSevSuffix, "--vcpus", "1"}, wantOut: "were all set"},
		"seabios as ovmf":      {args: []string{"--ovmf", measure.DefaultSimFirmware, "--kernel", b.kernel, "--vcpus", "1"}, wantErr: snp.ErrNoSEVMetadata},
		"append without kernel": {
			args: []string{"--sim", "--append", "console=ttyS0", "--vcpus", "1"}, wantErr: snp.ErrKernelRequired},
		"missing initrd": {args: []string{"--sim", "--kernel", b.kernel, "--initrd", filepath.Join(b.dir, "absent"), "--vcpus", "1"}, wantErr: os.ErrNotExist},
		"bad manifest":   {args: []string{"--sim", "--manifest", b.kernel, "--vcpus", "1"}, wantErr: ErrUsage},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := runStreams(t, append([]string{"measure"}, tc.args...)...)
			if err == nil {
				t.Fatalf("no error; stdout %q", stdout)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error()+stderr, tc.wantOut) {
				t.Errorf("error %q lacks %q", err.Error(), tc.wantOut)
			}
			if stdout != "" {
				t.Errorf("stdout %q after a failure", stdout)
			}
		})
	}
}
