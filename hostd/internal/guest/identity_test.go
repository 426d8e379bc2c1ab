package guest

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/simsp"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// twoOfOneSpec creates guests "a" and "b" from one spec (only the name
// differs) with mk and returns them.
func twoOfOneSpec(t *testing.T, m *Manager, mk func(name string) *spec.Spec) (Guest, Guest) {
	t.Helper()
	a, err := m.Create(t.Context(), mk("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(t.Context(), mk("b"))
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// qemuArg returns the QEMU argument of guest name that contains marker.
func qemuArg(t *testing.T, m *Manager, name, marker string) string {
	t.Helper()
	v, err := m.get(name)
	if err != nil {
		t.Fatal(err)
	}
	sp := v.spec
	boot := bootFiles{kernel: "/b/kernel", initrd: "/b/initrd", firmware: "/b/firmware"}
	args, err := qemu.Args(m.qemuConfig(v, &sp, boot, ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range args {
		if strings.Contains(a, marker) {
			return a
		}
	}
	t.Fatalf("no QEMU argument with %q in %q", marker, args)
	return ""
}

var hostDataArgRE = regexp.MustCompile(`,host-data=([A-Za-z0-9+/=]+)(,|$)`)

// TestGuestsOfOneImageDiffer: two sev-snp guests made from one spec are
// launched with different HOST_DATA, two tdx guests with different
// MRCONFIGID, each the digest of the guest's own identity.
func TestGuestsOfOneImageDiffer(t *testing.T) {
	dir := t.TempDir()
	ovmf := filepath.Join(dir, "OVMF.fd")
	if err := os.WriteFile(ovmf, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, Options{})
	a, b := twoOfOneSpec(t, m, func(name string) *spec.Spec {
		s := fakeImage(t, dir, name)
		s.TEE = spec.TEESNP
		s.Firmware = spec.Firmware{Kind: spec.FirmwareOVMF, Path: ovmf}
		return s
	})
	if a.Identity.ID == b.Identity.ID || a.Identity.HostData == b.Identity.HostData {
		t.Fatalf("two guests of one spec share an identity: %+v %+v", a.Identity, b.Identity)
	}
	for _, g := range []Guest{a, b} {
		m := hostDataArgRE.FindStringSubmatch(qemuArg(t, m, g.Name, "sev-snp-guest"))
		if m == nil {
			t.Fatalf("guest %s launched without host-data", g.Name)
		}
		raw, err := base64.StdEncoding.DecodeString(m[1])
		if err != nil || hex.EncodeToString(raw) != g.Identity.HostData {
			t.Fatalf("guest %s: host-data %s, identity says %s", g.Name, m[1], g.Identity.HostData)
		}
		if g.Identity.HostData == strings.Repeat("0", 64) {
			t.Fatalf("guest %s: HOST_DATA is zero", g.Name)
		}
	}

	mt := newTestManager(t, Options{})
	a, b = twoOfOneSpec(t, mt, func(name string) *spec.Spec {
		s := fakeImage(t, dir, name)
		s.TEE = spec.TEETDX
		s.Firmware = spec.Firmware{Kind: spec.FirmwareOVMF, Path: ovmf}
		return s
	})
	if a.Identity.MRConfigID == b.Identity.MRConfigID || len(a.Identity.MRConfigID) != 96 {
		t.Fatalf("tdx identities: %+v %+v", a.Identity, b.Identity)
	}
	for _, g := range []Guest{a, b} {
		raw, _ := hex.DecodeString(g.Identity.MRConfigID)
		want := `"mrconfigid":"` + base64.StdEncoding.EncodeToString(raw) + `"`
		if arg := qemuArg(t, mt, g.Name, "tdx-guest"); !strings.Contains(arg, want) {
			t.Fatalf("guest %s: tdx-guest object %s lacks %s", g.Name, arg, want)
		}
	}
}

// TestSimReportsCarryIdentity: the simulated secure processor signs each
// sim guest's reports with that guest's HOST_DATA, and the reports verify
// against the simulated root with it.
func TestSimReportsCarryIdentity(t *testing.T) {
	m := newTestManager(t, Options{})
	signer, err := sim.LoadOrCreate(filepath.Join(m.opts.StateDir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	m.opts.Signer = signer
	dir := t.TempDir()
	a, b := twoOfOneSpec(t, m, func(name string) *spec.Spec { return fakeImage(t, dir, name) })
	seen := map[string]string{}
	for _, g := range []Guest{a, b} {
		v, _ := m.get(g.Name)
		meas := strings.Repeat("ab", 48)
		rs := m.signerFor(v.spec, hostData(v.id, &v.spec), meas, slog.New(slog.DiscardHandler))
		var rd [simsp.ReportDataSize]byte
		copy(rd[:], g.Name)
		report, certs, err := rs.SignReport(rd)
		if err != nil {
			t.Fatal(err)
		}
		c, err := snp.Verify(report, certs, snp.Options{SimRoot: signer.RootCert(), AllowSMT: true, ReportData: rd[:]})
		if err != nil {
			t.Fatalf("verifying guest %s's report: %v", g.Name, err)
		}
		if c.HostData != g.Identity.HostData || c.Measurement != meas {
			t.Fatalf("guest %s: report HOST_DATA %s measurement %s, want %s and %s", g.Name, c.HostData, c.Measurement, g.Identity.HostData, meas)
		}
		if other, dup := seen[c.HostData]; dup {
			t.Fatalf("guests %s and %s report the same HOST_DATA", other, g.Name)
		}
		seen[c.HostData] = g.Name
	}
}

// TestIdentityLifetime: an identity survives a hostd restart, is not
// reused after a delete, and an explicit snp.host_data is used as given but
// may not repeat another guest's.
func TestIdentityLifetime(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Options{})
	g, err := m.Create(t.Context(), fakeImage(t, dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(g.Identity.ID) {
		t.Fatalf("identity %q is not a version 4 UUID", g.Identity.ID)
	}
	m2 := newTestManager(t, Options{StateDir: m.opts.StateDir})
	if g2, err := m2.Get("x"); err != nil || g2.Identity != g.Identity {
		t.Fatalf("after a restart: %+v, %v; want %+v", g2.Identity, err, g.Identity)
	}
	if err := m2.Delete(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
	g3, err := m2.Create(t.Context(), fakeImage(t, dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if g3.Identity.ID == g.Identity.ID || g3.Identity.HostData == g.Identity.HostData {
		t.Fatalf("a re-created guest got the deleted one's identity %+v", g3.Identity)
	}

	explicit := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("h", 32)))
	withHostData := func(name string) *spec.Spec {
		s := fakeImage(t, dir, name)
		s.SNP.HostData = explicit
		return s
	}
	e, err := m2.Create(t.Context(), withHostData("e1"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Identity.HostData != hex.EncodeToString([]byte(strings.Repeat("h", 32))) {
		t.Fatalf("explicit host_data not used: %+v", e.Identity)
	}
	if _, err := m2.Create(t.Context(), withHostData("e2")); !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), `"e1"`) {
		t.Fatalf("second guest with the same host_data: err = %v, want ErrInvalid naming e1", err)
	}
}

// TestGuestIDFileDamaged: a guest whose identity file is damaged is not
// loaded with a made-up identity.
func TestGuestIDFileDamaged(t *testing.T) {
	m := newTestManager(t, Options{})
	if _, err := m.Create(t.Context(), fakeImage(t, t.TempDir(), "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.guestDir("d"), idFile), []byte("not-a-uuid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m2 := newTestManager(t, Options{StateDir: m.opts.StateDir})
	if _, err := m2.Get("d"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("guest with a damaged identity loaded: %v", err)
	}
}
