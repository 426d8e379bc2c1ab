package sim_test

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

func TestSignVerifies(t *testing.T) {
	dir := t.TempDir()
	s, err := sim.Create(dir)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	var req sim.Request
	copy(req.ReportData[:], bytes.Repeat([]byte{0x5a}, 64))
	copy(req.Measurement[:], bytes.Repeat([]byte{0x33}, 48))
	req.HostData[31] = 9
	req.GuestSVN = 2
	report, table, err := s.Sign(req)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if len(report) != abi.ReportSize {
		t.Fatalf("report is %d bytes", len(report))
	}
	opts := snp.Options{
		SimRoot:      s.RootCert(),
		AllowSMT:     true,
		ReportData:   req.ReportData[:],
		Measurements: [][]byte{req.Measurement[:]},
		MinimumTCB:   s.TCB(),
	}
	claims, err := snp.Verify(report, table, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if claims.Policy.Value != sim.DefaultPolicy || claims.Policy.Debug || claims.Policy.MigrationAgent || !claims.Policy.SMT ||
		claims.Policy.ABIMajor != 0 || claims.Policy.ABIMinor != 31 {
		t.Errorf("claims.Policy = %+v, want the default production policy", claims.Policy)
	}
	if claims.Version != sim.ReportVersion || !claims.Simulated || claims.GuestSVN != 2 || claims.VMPL != 0 {
		t.Errorf("claims = %+v", claims)
	}
	if want := (snp.TCB{Value: claims.ReportedTCB.Value, Bootloader: 4, TEE: 0, SNP: 22, Microcode: 213}); claims.ReportedTCB != want {
		t.Errorf("claims.ReportedTCB = %+v, want %+v", claims.ReportedTCB, want)
	}
	chip := s.ChipID()
	if !bytes.Equal(report[0x1A0:0x1E0], chip[:]) {
		t.Error("report CHIP_ID is not the signer's chip ID")
	}

	// One flipped byte anywhere in the signed part fails.
	for _, off := range []int{0x04, 0x08, 0x38, 0x50, 0x90, 0xC0, 0x180, 0x1A0, 0x29F} {
		bad := bytes.Clone(report)
		bad[off] ^= 0x01
		if _, err := snp.Verify(bad, table, opts); err == nil {
			t.Errorf("Verify accepted a report with byte %#x flipped", off)
		}
	}
	// The chain is rejected without the simulated root.
	opts.SimRoot = nil
	if _, err := snp.Verify(report, table, opts); !errors.Is(err, snp.ErrChain) {
		t.Errorf("Verify(no sim root) error = %v, want ErrChain", err)
	}
}

func TestSignRequests(t *testing.T) {
	s, err := sim.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		req        sim.Request
		wantPolicy uint64
		wantSMT    bool
		wantErr    bool
	}{
		"default policy":   {req: sim.Request{}, wantPolicy: sim.DefaultPolicy, wantSMT: true},
		"debug on request": {req: sim.Request{Policy: sim.DefaultPolicy | 1<<19}, wantPolicy: sim.DefaultPolicy | 1<<19, wantSMT: true},
		"no SMT":           {req: sim.Request{Policy: 1 << 17}, wantPolicy: 1 << 17},
		"VMPL 3":           {req: sim.Request{VMPL: 3}, wantPolicy: sim.DefaultPolicy, wantSMT: true},
		"VMPL 4":           {req: sim.Request{VMPL: 4}, wantErr: true},
		"reserved bit 17":  {req: sim.Request{Policy: 1 << 16}, wantErr: true},
		"reserved high":    {req: sim.Request{Policy: sim.DefaultPolicy | 1<<40}, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			report, table, err := s.Sign(tt.req)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Sign() error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := binary.LittleEndian.Uint64(report[0x08:]); got != tt.wantPolicy {
				t.Errorf("policy = %#x, want %#x", got, tt.wantPolicy)
			}
			if got := binary.LittleEndian.Uint64(report[0x40:])&1 == 1; got != tt.wantSMT {
				t.Errorf("PLATFORM_INFO SMT = %v, want %v", got, tt.wantSMT)
			}
			if got := binary.LittleEndian.Uint32(report[0x30:]); got != tt.req.VMPL {
				t.Errorf("VMPL = %d, want %d", got, tt.req.VMPL)
			}
			if !bytes.Equal(table, s.CertTable()) {
				t.Error("Sign returned a different certificate table")
			}
			if _, err := abi.ReportToProto(report); err != nil {
				t.Errorf("abi.ReportToProto: %v", err)
			}
		})
	}
}

func TestCreateLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "snp")
	created, err := sim.Create(dir)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := sim.Create(dir); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create error = %v, want fs.ErrExist", err)
	}
	for _, name := range []string{sim.ARKKeyFile, sim.ASKKeyFile, sim.VCEKKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}
	loaded, err := sim.Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	again, err := sim.LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate(existing): %v", err)
	}
	for _, s := range []*sim.Signer{loaded, again} {
		if !bytes.Equal(s.RootPEM(), created.RootPEM()) || !s.RootCert().Equal(created.RootCert()) {
			t.Error("loaded root differs from the created one")
		}
		if !bytes.Equal(s.CertTable(), created.CertTable()) || s.TCB() != created.TCB() || s.ChipID() != created.ChipID() {
			t.Error("loaded chain differs from the created one")
		}
	}
	// A report signed by the loaded signer verifies against the created root.
	report, table, err := loaded.Sign(sim.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snp.Verify(report, table, snp.Options{SimRoot: created.RootCert(), AllowSMT: true}); err != nil {
		t.Errorf("Verify(loaded signer's report): %v", err)
	}
	root, err := snp.ParseSimRoot(created.RootPEM())
	if err != nil || !root.Equal(created.RootCert()) {
		t.Errorf("ParseSimRoot(RootPEM()) = %v, %v", root, err)
	}
}

func TestLoadOrCreateNew(t *testing.T) {
	dir := t.TempDir()
	s, err := sim.LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate(empty): %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, sim.ARKCertFile)); err != nil {
		t.Errorf("ARK not written: %v", err)
	}
	if s.RootCert() == nil {
		t.Error("no root")
	}
}

func TestLoadErrors(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if _, err := sim.Create(src); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(base, "other")
	if _, err := sim.Create(other); err != nil {
		t.Fatal(err)
	}
	tests := map[string]func(dir string){
		"missing VCEK key":     func(dir string) { os.Remove(filepath.Join(dir, sim.VCEKKeyFile)) },
		"missing ARK":          func(dir string) { os.Remove(filepath.Join(dir, sim.ARKCertFile)) },
		"world-readable key":   func(dir string) { os.Chmod(filepath.Join(dir, sim.VCEKKeyFile), 0o644) },
		"group-readable ASK":   func(dir string) { os.Chmod(filepath.Join(dir, sim.ASKKeyFile), 0o640) },
		"other VCEK key":       func(dir string) { copyFile(t, other, dir, sim.VCEKKeyFile) },
		"other ASK":            func(dir string) { copyFile(t, other, dir, sim.ASKCertFile) },
		"other ARK":            func(dir string) { copyFile(t, other, dir, sim.ARKCertFile) },
		"garbage certificate":  func(dir string) { os.WriteFile(filepath.Join(dir, sim.VCEKCertFile), []byte("junk"), 0o644) },
		"key in cert file":     func(dir string) { copyAs(t, dir, sim.VCEKKeyFile, sim.VCEKCertFile) },
		"cert in key file":     func(dir string) { copyAs(t, dir, sim.VCEKCertFile, sim.VCEKKeyFile) },
		"RSA key as VCEK key":  func(dir string) { copyAs(t, dir, sim.ASKKeyFile, sim.VCEKKeyFile) },
		"two certs in one PEM": func(dir string) { appendFile(t, dir, sim.ASKCertFile, sim.ARKCertFile) },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "sim")
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{sim.ARKKeyFile, sim.ASKKeyFile, sim.VCEKKeyFile} {
				os.Chmod(filepath.Join(dir, k), 0o600)
			}
			if _, err := sim.Load(dir); err != nil {
				t.Fatalf("Load(unmodified copy): %v", err)
			}
			mutate(dir)
			if _, err := sim.Load(dir); err == nil {
				t.Error("Load succeeded")
			}
		})
	}
}

func copyFile(t *testing.T, from, to, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(from, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyAs(t *testing.T, dir, from, to string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, from))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, dir, from, to string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, from))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, to), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestResign(t *testing.T) {
	s, err := sim.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	report, table, err := s.Sign(sim.Request{})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(report)
	tampered[0x90] ^= 1
	opts := snp.Options{SimRoot: s.RootCert(), AllowSMT: true}
	if _, err := snp.Verify(tampered, table, opts); !errors.Is(err, snp.ErrSignature) {
		t.Fatalf("Verify(tampered) error = %v, want ErrSignature", err)
	}
	resigned, err := s.Resign(tampered)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snp.Verify(resigned, table, opts); err != nil {
		t.Errorf("Verify(resigned): %v", err)
	}
	if _, err := s.Resign(report[:100]); err == nil {
		t.Error("Resign accepted a short report")
	}
}

func TestVCEKShape(t *testing.T) {
	s, err := sim.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var table abi.CertTable
	if err := table.Unmarshal(s.CertTable()); err != nil {
		t.Fatal(err)
	}
	der, err := table.GetByGUIDString(abi.VcekGUID)
	if err != nil {
		t.Fatal(err)
	}
	vcek, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	exts, err := kds.VcekCertificateExtensions(vcek)
	if err != nil {
		t.Fatal(err)
	}
	if exts.ProductName != "Milan-B0" || kds.DecomposeTCBVersion(exts.TCBVersion) != s.TCB() {
		t.Errorf("VCEK extensions = %+v", exts)
	}
	if vcek.SignatureAlgorithm != x509.SHA384WithRSAPSS || vcek.Subject.CommonName != "SEV-VCEK" || vcek.Issuer.CommonName != "SEV-Milan" {
		t.Errorf("VCEK = %v signed %v by %v", vcek.Subject, vcek.SignatureAlgorithm, vcek.Issuer)
	}
	if s.RootCert().Subject.CommonName != "ARK-Milan" {
		t.Errorf("ARK subject = %v", s.RootCert().Subject)
	}
}
