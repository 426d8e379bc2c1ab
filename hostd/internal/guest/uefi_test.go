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
)

// uefiImage writes a (not bootable) UEFI image: ESP, a variable store
// template of varsSize bytes and an OVMF code image, and returns a sim
// spec booting it with OVMF.
func uefiImage(t *testing.T, dir, name string, varsSize int) *spec.Spec {
	t.Helper()
	vars := bytes.Repeat([]byte{0xa5}, varsSize)
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
	sp := uefiImage(t, img, "u", spec.OVMFVars4MSize)
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
	if err := os.WriteFile(sp.Image.UEFIVars, make([]byte, spec.OVMFVars4MSize), 0o644); err != nil {
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
	for name, size := range map[string]int{"2 MiB build": 131072, "one byte short": spec.OVMFVars4MSize - 1, "empty": 0} {
		sp := uefiImage(t, img, "v", size)
		if _, err := m.Create(ctx, sp); !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), "OVMF_VARS_4M") {
			t.Errorf("%s: Create = %v, want ErrInvalid naming OVMF_VARS_4M", name, err)
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
	if err := os.WriteFile(secret, make([]byte, spec.OVMFVars4MSize), 0o600); err != nil {
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
	sp := uefiImage(t, img, "u", spec.OVMFVars4MSize)
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
	refused := "\x1b[2J\x1b[01;01HBdsDxe: failed to load Boot0002 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0): Access Denied\r\n" +
		"BdsDxe: No bootable option or device was found.\r\nBdsDxe: Press any key to enter the Boot Manager Menu.\r\n"
	booted := "BdsDxe: loading Boot0001 \"UEFI Non-Block Boot Device\" from PciRoot(0x0)/Pci(0x1,0x0)\n" +
		"BdsDxe: starting Boot0001 \"UEFI Non-Block Boot Device\" from PciRoot(0x0)/Pci(0x1,0x0)\n" +
		"EFI stub: UEFI Secure Boot is enabled.\n[    0.000000] Linux version 6.1.0\n"
	tests := map[string]struct {
		out        string
		wantReason string
		wantDone   bool
	}{
		"secure boot refusal":   {out: refused, wantReason: RefusalAccessDenied, wantDone: true},
		"nothing to boot":       {out: "BdsDxe: No bootable option or device was found.\n", wantReason: RefusalNoBootable, wantDone: true},
		"booted":                {out: booted, wantDone: true},
		"guest prints it later": {out: booted + "app: Access Denied\nNo bootable option or device was found\n", wantDone: true},
		"still in firmware":     {out: "BdsDxe: loading Boot0001\n"},
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
