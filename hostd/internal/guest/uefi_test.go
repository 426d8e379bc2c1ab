package guest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/measure/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// Debian's test-only Secure Boot variable stores (package ovmf): the
// snakeoil one has its test certificate enrolled with Secure Boot on, the
// blank one has no PK.
const (
	snakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	blankVars    = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (install ovmf: scripts/install-deps.sh)", err)
	}
	return b
}

// uefiImage writes a (not bootable) UEFI image: ESP, the variable store
// template vars and an OVMF code image, and returns a sim spec booting it
// with OVMF.
func uefiImage(t *testing.T, dir, name string, vars []byte) *spec.Spec {
	t.Helper()
	files := map[string][]byte{
		"esp.img":      make([]byte, 64<<10),
		"uefi-vars.fd": vars,
		"OVMF_CODE.fd": bytes.Repeat([]byte{0x90}, 128<<10),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &spec.Spec{
		Name: name, TEE: spec.TEESim, VCPUs: 1, Memory: 256 << 20, Verifier: "127.0.0.1:8443",
		Image:    spec.Image{ESP: filepath.Join(dir, "esp.img"), UEFIVars: filepath.Join(dir, "uefi-vars.fd")},
		Firmware: spec.Firmware{Path: filepath.Join(dir, "OVMF_CODE.fd")},
	}
}

// TestVarStoreLifecycle: an ovmf guest's variable store is copied from the
// image's template at create (0600, in the guest's directory), reported in
// its status, never overwritten (not by a changed template, a start or a
// hostd restart), and removed with the guest.
func TestVarStoreLifecycle(t *testing.T) {
	state, img := shortDir(t), t.TempDir()
	ctx := context.Background()
	m, err := New(ctx, Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	sp := uefiImage(t, img, "u", readFile(t, snakeoilVars))
	g, err := m.Create(ctx, sp)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	store := filepath.Join(state, "guests", "u", varStoreFile)
	if g.Status.UEFIVars != store || g.Spec.Firmware.Kind != spec.FirmwareOVMF {
		t.Fatalf("status uefi_vars %q kind %q, want %s and ovmf", g.Status.UEFIVars, g.Spec.Firmware.Kind, store)
	}
	fi, err := os.Stat(store)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("variable store %v (mode %v), want a 0600 file", err, fi)
	}
	tmpl, _ := os.ReadFile(sp.Image.UEFIVars)
	if b, _ := os.ReadFile(store); !bytes.Equal(b, tmpl) {
		t.Fatal("variable store differs from the template")
	}
	// The firmware writes the store (a boot option, say); the image's
	// template changes. Neither a re-install nor a restart undoes that.
	guestState := append(bytes.Clone(tmpl[:100]), bytes.Repeat([]byte{0x5a}, len(tmpl)-100)...)
	if err := os.WriteFile(store, guestState, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sp.Image.UEFIVars, readFile(t, blankVars), 0o644); err != nil {
		t.Fatal(err)
	}
	if made, err := installVarStore(state, sp.Image.UEFIVars, store); err != nil || made {
		t.Fatalf("installVarStore over an existing store = %t, %v; want it kept", made, err)
	}
	if err := m.Close(ctx, OnExitStop); err != nil {
		t.Fatal(err)
	}
	if m, err = New(ctx, Options{StateDir: state}); err != nil {
		t.Fatal(err)
	}
	g, err = m.Get("u")
	if err != nil || g.Status.UEFIVars != store {
		t.Fatalf("after a restart: %v, uefi_vars %q", err, g.Status.UEFIVars)
	}
	if b, _ := os.ReadFile(store); !bytes.Equal(b, guestState) {
		t.Fatal("variable store changed across a hostd restart")
	}
	if err := m.Delete(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("variable store left after delete: %v", err)
	}
}

// TestVarStoreTemplateRefused: a template that is not an OVMF_VARS_4M
// store, or that lies in hostd's state directory, is refused at create,
// leaving nothing behind.
func TestVarStoreTemplateRefused(t *testing.T) {
	state, img := shortDir(t), t.TempDir()
	ctx := context.Background()
	m, err := New(ctx, Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx, OnExitStop)
	good := readFile(t, snakeoilVars)
	for name, tc := range map[string]struct {
		vars    []byte
		wantSub string
	}{
		"2 MiB build":     {vars: readFile(t, "/usr/share/OVMF/OVMF_VARS.fd"), wantSub: "OVMF_VARS_4M"},
		"one byte short":  {vars: good[:len(good)-1], wantSub: "OVMF_VARS_4M"},
		"empty":           {vars: nil, wantSub: "OVMF_VARS_4M"},
		"not a store":     {vars: make([]byte, len(good)), wantSub: "firmware volume"},
		"secure boot off": {vars: readFile(t, blankVars), wantSub: "does not enable Secure Boot"},
	} {
		sp := uefiImage(t, img, "v", tc.vars)
		if _, err := m.Create(ctx, sp); !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), tc.wantSub) {
			t.Errorf("%s: Create = %v, want ErrInvalid mentioning %q", name, err, tc.wantSub)
		}
		if _, err := os.Stat(filepath.Join(state, "guests", "v")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: guest directory left after a refused create: %v", name, err)
		}
		// The copy checks the bytes it copies, not what Validate saw.
		if _, err := installVarStore(state, sp.Image.UEFIVars, filepath.Join(t.TempDir(), "vars")); !errors.Is(err, spec.ErrInvalid) {
			t.Errorf("%s: installVarStore = %v, want ErrInvalid", name, err)
		}
	}
	secret := filepath.Join(state, "keys", "x.fd")
	if err := os.WriteFile(secret, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := installVarStore(state, secret, filepath.Join(t.TempDir(), "vars")); !errors.Is(err, spec.ErrStateDir) {
		t.Errorf("template in the state directory: %v, want ErrStateDir", err)
	}
}

// TestUEFIMeasurement: a UEFI guest's simulated launch digest covers the
// OVMF code copy QEMU boots and the vCPUs, and no kernel hashes (what
// confidant-image build computes with no kernel); nothing is copied for a
// direct boot.
func TestUEFIMeasurement(t *testing.T) {
	img := t.TempDir()
	sp := uefiImage(t, img, "u", readFile(t, snakeoilVars))
	if err := sp.Resolve(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bf, err := prepareBoot(sp, dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	code, _ := os.ReadFile(sp.Firmware.Path)
	if b, _ := os.ReadFile(bf.firmware); !bytes.Equal(b, code) {
		t.Fatal("boot copy of the OVMF code differs from the image's")
	}
	want, err := snp.SimLaunchDigest(snp.SNPParams{OVMF: code, VCPUs: 1, VCPUType: "EPYC-v4"})
	if err != nil {
		t.Fatal(err)
	}
	if bf.measurement != hex.EncodeToString(want[:]) {
		t.Fatalf("measurement %s, want SimLaunchDigest(code, no kernel) %x", bf.measurement, want)
	}
	if bf.kernel != "" || bf.initrd != "" {
		t.Fatalf("kernel or initrd prepared for a UEFI guest: %+v", bf)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("boot directory holds %d files, want only the firmware", len(entries))
	}
	two := *sp
	two.VCPUs = 2
	if bf2, _ := prepareBoot(&two, t.TempDir(), t.TempDir()); bf2.measurement == bf.measurement {
		t.Fatal("measurement does not cover the vCPU count")
	}
}

func TestScanFirmware(t *testing.T) {
	// As OVMF 2022.11 printed them here (screen control, CRLF).
	const cls = "\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H"
	refused := cls + "BdsDxe: loading Boot0001 \"UEFI Non-Block Boot Device\" from PciRoot(0x0)/Pci(0x1,0x0)\r\n" +
		"BdsDxe: failed to load Boot0001 \"UEFI Non-Block Boot Device\" from PciRoot(0x0)/Pci(0x1,0x0): Access Denied\r\n" +
		"BdsDxe: loading Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)\r\n" +
		"BdsDxe: starting Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)\r\n" +
		"BdsDxe: failed to start Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9): Security Violation\r\n" +
		"BdsDxe: No bootable option or device was found.\r\nBdsDxe: Press any key to enter the Boot Manager Menu.\r\n"
	starting := cls + "BdsDxe: loading Boot0001 \"UEFI Non-Block Boot Device\" from PciRoot(0x0)/Pci(0x1,0x0)\r\n" +
		"BdsDxe: starting Boot0001 \"UEFI Non-Block Boot Device\" from PciRoot(0x0)/Pci(0x1,0x0)\r\n"
	tests := map[string]struct {
		out        string
		wantReason string
		wantDone   bool
	}{
		"secure boot refusal":   {out: refused, wantReason: RefusalAccessDenied, wantDone: true},
		"refused at start":      {out: starting + "BdsDxe: failed to start Boot0001 \"x\": Security Violation\r\n", wantReason: RefusalSecurityViolation, wantDone: true},
		"nothing to boot":       {out: cls + "BdsDxe: No bootable option or device was found.\r\n", wantReason: RefusalNoBootable, wantDone: true},
		"kernel runs":           {out: starting + "EFI stub: UEFI Secure Boot is enabled.\r\n", wantDone: true},
		"quiet kernel, init":    {out: starting + "SPINIT-REPORT n=1\n", wantDone: true},
		"guest prints it later": {out: starting + "[    1.0] x\r\nBdsDxe: No bootable option or device was found.\r\napp: Access Denied\n", wantDone: true},
		"image starting":        {out: starting},
		"partial refusal line":  {out: cls + "BdsDxe: failed to load Boot0001: Access Den"},
		"empty":                 {},
	}
	for name, tc := range tests {
		reason, done := scanFirmware([]byte(tc.out))
		if reason != tc.wantReason || done != tc.wantDone {
			t.Errorf("%s: scanFirmware = %q, %t; want %q, %t", name, reason, done, tc.wantReason, tc.wantDone)
		}
	}
}

// TestBootOutput: the watch reads only what follows the last start marker.
func TestBootOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	appendLine(path, startMarker+"g at 1")
	appendLine(path, "BdsDxe: failed to load Boot0002: Access Denied")
	appendLine(path, startMarker+"g at 2")
	appendLine(path, "BdsDxe: loading Boot0001")
	if got := string(bootOutput(path)); got != "BdsDxe: loading Boot0001\n" {
		t.Fatalf("bootOutput = %q", got)
	}
}

// TestUEFIPathsIntoStateDirRefused: an ESP or variable store template that
// resolves into the state directory is refused at create, naming the field,
// and an ESP symlink swapped after create is caught at start, before QEMU
// gets a descriptor.
func TestUEFIPathsIntoStateDirRefused(t *testing.T) {
	m := newTestManager(t, Options{QEMU: "/bin/false"})
	signer, err := sim.LoadOrCreate(filepath.Join(m.opts.StateDir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	m.opts.Signer = signer
	secret := filepath.Join(m.opts.StateDir, "sim", sim.VCEKKeyFile)
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	for field, mut := range map[string]func(*spec.Spec){
		"image.esp":       func(s *spec.Spec) { s.Image.ESP = link },
		"image.uefi_vars": func(s *spec.Spec) { s.Image.UEFIVars = link },
	} {
		s := uefiImage(t, dir, "g", readFile(t, snakeoilVars))
		mut(s)
		if _, err := m.Create(t.Context(), s); !errors.Is(err, spec.ErrStateDir) || !strings.Contains(err.Error(), field+": ") {
			t.Errorf("Create() = %v, want ErrStateDir naming %s", err, field)
		}
	}
	s := uefiImage(t, dir, "g", readFile(t, snakeoilVars))
	s.VTPM = spec.VTPMNone
	espLink := filepath.Join(dir, "esp-link")
	if err := os.Symlink(s.Image.ESP, espLink); err != nil {
		t.Fatal(err)
	}
	s.Image.ESP = espLink
	if _, err := m.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(espLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, espLink); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(t.Context(), "g"); !errors.Is(err, spec.ErrStateDir) || !strings.Contains(err.Error(), "image.esp") {
		t.Fatalf("Start() = %v, want ErrStateDir naming image.esp", err)
	}
}
