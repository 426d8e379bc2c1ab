package preflight

import (
	"context"
	_ "embed"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
)

// ovmfSuffix is the last page of an OVMF AmdSev build (sev-snp-measure's
// fixture, via shared/measure/snp/testdata): it has the SEV metadata with
// SNP_KERNEL_HASHES.
//
//go:embed testdata/ovmf_AmdSev_suffix.bin
var ovmfSuffix []byte

func version(v qemu.Version) func(context.Context) (qemu.Version, error) {
	return func(context.Context) (qemu.Version, error) { return v, nil }
}

func snpHost() (fstest.MapFS, Host) {
	root := fstest.MapFS{
		"sys/module/kvm_amd/parameters/sev_snp": {Data: []byte("Y\n")},
		"dev/sev":                               {Data: nil},
		"dev/kvm":                               {Data: nil},
		"usr/share/ovmf/OVMF.amdsev.fd":         {Data: ovmfSuffix},
		"usr/share/ovmf/OVMF.fd":                {Data: make([]byte, 4096)},
		"usr/share/svsm/coconut.igvm":           {Data: []byte("igvm")},
	}
	return root, Host{Root: root, QEMUVersion: version(qemu.Version{Major: 9, Minor: 1})}
}

func tdxHost() (fstest.MapFS, Host) {
	root := fstest.MapFS{
		"sys/module/kvm_intel/parameters/tdx": {Data: []byte("Y\n")},
		"dev/kvm":                             {Data: nil},
		"usr/share/ovmf/OVMF.tdx.fd":          {Data: make([]byte, 4096)},
		"run/qgs.sock":                        {Mode: 0o600 | fs.ModeSocket},
	}
	return root, Host{Root: root, QEMUVersion: version(qemu.Version{Major: 10, Minor: 1})}
}

func snpSpec() *spec.Spec {
	return &spec.Spec{Name: "g", TEE: spec.TEESNP, Firmware: spec.Firmware{Kind: spec.FirmwareOVMF, Path: "/usr/share/ovmf/OVMF.amdsev.fd"}}
}

func tdxSpec() *spec.Spec {
	return &spec.Spec{Name: "g", TEE: spec.TEETDX, Firmware: spec.Firmware{Kind: spec.FirmwareOVMF, Path: "/usr/share/ovmf/OVMF.tdx.fd"}, TDX: spec.TDX{QGSSocket: "/run/qgs.sock"}}
}

func TestCheck(t *testing.T) {
	tests := map[string]struct {
		host    func() (fstest.MapFS, Host)
		spec    func() *spec.Spec
		mutate  func(fstest.MapFS, *Host, *spec.Spec)
		wantSub string // empty: passes
	}{
		"sim always passes": {host: func() (fstest.MapFS, Host) { return fstest.MapFS{}, Host{Root: fstest.MapFS{}} }, spec: func() *spec.Spec { return &spec.Spec{TEE: spec.TEESim} }},
		"snp ready":         {host: snpHost, spec: snpSpec},
		"snp param off": {host: snpHost, spec: snpSpec, mutate: func(root fstest.MapFS, _ *Host, _ *spec.Spec) {
			root["sys/module/kvm_amd/parameters/sev_snp"].Data = []byte("N\n")
		}, wantSub: "sev_snp"},
		"snp no kvm_amd":   {host: snpHost, spec: snpSpec, mutate: func(root fstest.MapFS, _ *Host, _ *spec.Spec) { delete(root, "sys/module/kvm_amd/parameters/sev_snp") }, wantSub: "sev_snp"},
		"snp no /dev/sev":  {host: snpHost, spec: snpSpec, mutate: func(root fstest.MapFS, _ *Host, _ *spec.Spec) { delete(root, "dev/sev") }, wantSub: "/dev/sev"},
		"snp no /dev/kvm":  {host: snpHost, spec: snpSpec, mutate: func(root fstest.MapFS, _ *Host, _ *spec.Spec) { delete(root, "dev/kvm") }, wantSub: "/dev/kvm"},
		"snp old qemu":     {host: snpHost, spec: snpSpec, mutate: func(_ fstest.MapFS, h *Host, _ *spec.Spec) { h.QEMUVersion = version(qemu.Version{Major: 7, Minor: 2}) }, wantSub: "too old"},
		"snp unknown qemu": {host: snpHost, spec: snpSpec, mutate: func(_ fstest.MapFS, h *Host, _ *spec.Spec) { h.QEMUVersion = nil }, wantSub: "QEMU version unknown"},
		"snp qemu error": {host: snpHost, spec: snpSpec, mutate: func(_ fstest.MapFS, h *Host, _ *spec.Spec) {
			h.QEMUVersion = func(context.Context) (qemu.Version, error) { return qemu.Version{}, qemu.ErrVersion }
		}, wantSub: "unknown"},
		"snp missing firmware": {host: snpHost, spec: snpSpec, mutate: func(_ fstest.MapFS, _ *Host, s *spec.Spec) { s.Firmware.Path = "/nope.fd" }, wantSub: "not a readable file"},
		"snp plain ovmf":       {host: snpHost, spec: snpSpec, mutate: func(_ fstest.MapFS, _ *Host, s *spec.Spec) { s.Firmware.Path = "/usr/share/ovmf/OVMF.fd" }, wantSub: "SNP_KERNEL_HASHES"},
		"snp igvm needs qemu 10": {host: snpHost, spec: snpSpec, mutate: func(_ fstest.MapFS, _ *Host, s *spec.Spec) {
			s.Firmware = spec.Firmware{Kind: spec.FirmwareIGVM, Path: "/usr/share/svsm/coconut.igvm"}
		}, wantSub: "need ≥ 10.0"},
		"snp igvm on qemu 10": {host: snpHost, spec: snpSpec, mutate: func(_ fstest.MapFS, h *Host, s *spec.Spec) {
			s.Firmware = spec.Firmware{Kind: spec.FirmwareIGVM, Path: "/usr/share/svsm/coconut.igvm"}
			h.QEMUVersion = version(qemu.Version{Major: 10})
		}},
		"tdx ready": {host: tdxHost, spec: tdxSpec},
		"tdx param off": {host: tdxHost, spec: tdxSpec, mutate: func(root fstest.MapFS, _ *Host, _ *spec.Spec) {
			root["sys/module/kvm_intel/parameters/tdx"].Data = []byte("N")
		}, wantSub: "TDX is not enabled"},
		"tdx qemu 10.0": {host: tdxHost, spec: tdxSpec, mutate: func(_ fstest.MapFS, h *Host, _ *spec.Spec) {
			h.QEMUVersion = version(qemu.Version{Major: 10, Minor: 0})
		}, wantSub: "too old"},
		"tdx no qgs":               {host: tdxHost, spec: tdxSpec, mutate: func(root fstest.MapFS, _ *Host, _ *spec.Spec) { delete(root, "run/qgs.sock") }, wantSub: "Quote Generation"},
		"tdx qgs not socket":       {host: tdxHost, spec: tdxSpec, mutate: func(root fstest.MapFS, _ *Host, _ *spec.Spec) { root["run/qgs.sock"] = &fstest.MapFile{} }, wantSub: "Quote Generation"},
		"tdx missing firmware":     {host: tdxHost, spec: tdxSpec, mutate: func(root fstest.MapFS, _ *Host, _ *spec.Spec) { delete(root, "usr/share/ovmf/OVMF.tdx.fd") }, wantSub: "firmware"},
		"tdx checked on snp host":  {host: snpHost, spec: tdxSpec, wantSub: "TDX is not enabled"},
		"snp checked on tdx host":  {host: tdxHost, spec: snpSpec, wantSub: "SEV-SNP is not enabled"},
		"unknown tee fails closed": {host: snpHost, spec: func() *spec.Spec { return &spec.Spec{TEE: "sgx"} }, wantSub: "unknown TEE"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root, h := tc.host()
			s := tc.spec()
			if tc.mutate != nil {
				tc.mutate(root, &h, s)
			}
			err := Check(t.Context(), h, s)
			if tc.wantSub == "" {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrIsolationUnavailable) {
				t.Fatalf("Check() = %v, want ErrIsolationUnavailable", err)
			}
			if !strings.Contains(err.Error(), tc.wantSub) {
				t.Fatalf("Check() = %v, want it to mention %q", err, tc.wantSub)
			}
		})
	}
}

// TestCheckThisHost runs the real probes: this machine has no SEV-SNP or
// TDX, so both must be refused.
func TestCheckThisHost(t *testing.T) {
	h := Host{Root: osRoot(), QEMUVersion: func(ctx context.Context) (qemu.Version, error) {
		return qemu.BinaryVersion(ctx, "qemu-system-x86_64")
	}}
	for _, s := range []*spec.Spec{snpSpec(), tdxSpec()} {
		if err := Check(t.Context(), h, s); !errors.Is(err, ErrIsolationUnavailable) {
			t.Errorf("%s on this host: Check() = %v, want ErrIsolationUnavailable", s.TEE, err)
		} else {
			t.Logf("%s refused: %v", s.TEE, err)
		}
	}
}
