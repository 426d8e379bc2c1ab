package guest

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/hostd/internal/testboot"
	"github.com/confidant-cvm/confidant/shared/measure/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// TestUEFIGuestSecureBoot boots sim guests the default way, OVMF with
// Secure Boot under TCG with swtpm, from ESPs made here: an unsigned UKI is
// refused by the firmware, and hostd stops that guest and marks it failed
// with the reason; the same UKI signed with the key the variable store
// enrols (ovmf's test-only snakeoil key) runs, and its report carries the
// measurement hostd computed over the OVMF code alone.
func TestUEFIGuestSecureBoot(t *testing.T) {
	stateDir := shortDir(t)
	killAll(t, stateDir)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(stateDir, "guests", "*", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
	})
	dir := t.TempDir()
	fix := testboot.Build(t, dir)
	uki := testboot.BuildUKI(t, dir, fix, "console=ttyS0 panic=-1 quiet")
	unsignedESP := testboot.BuildESP(t, dir, "unsigned.img", uki)
	signedESP := testboot.BuildESP(t, dir, "signed.img", testboot.SignSnakeoil(t, dir, uki))

	signer, err := sim.LoadOrCreate(filepath.Join(stateDir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	m, err := New(ctx, Options{StateDir: stateDir, Signer: signer, StopTimeout: 2 * time.Second, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { m.Close(context.Background(), OnExitStop) }()
	uefiSpec := func(name, esp string) *spec.Spec {
		return &spec.Spec{
			Name: name, TEE: spec.TEESim, VCPUs: 1, Memory: 512 << 20, Verifier: "127.0.0.1:9",
			Image: spec.Image{ESP: esp, UEFIVars: testboot.SnakeoilVars},
		}
	}

	// The unsigned UKI: OVMF refuses it and would wait forever.
	if _, err := m.Create(ctx, uefiSpec("refused", unsignedESP)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := m.Start(ctx, "refused"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	g := waitState(t, m, "refused", StateFailed, 90*time.Second)
	if g.Status.Reason != RefusalAccessDenied {
		t.Errorf("reason = %q, want %q", g.Status.Reason, RefusalAccessDenied)
	}
	if g.Status.PID != 0 {
		t.Errorf("failed guest still has a QEMU pid %d", g.Status.PID)
	}
	console, _ := os.ReadFile(filepath.Join(stateDir, "guests", "refused", "console.log"))
	if !strings.Contains(string(console), "Access Denied") {
		t.Errorf("console lacks the firmware's refusal:\n%s", console)
	}
	if _, err := os.Stat(g.Status.UEFIVars); err != nil {
		t.Errorf("variable store of the refused guest: %v", err)
	}

	// The signed UKI boots, with the measurement of the OVMF code.
	if _, err := m.Create(ctx, uefiSpec("signed", signedESP)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	g, err = m.Start(ctx, "signed")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	code, err := os.ReadFile(spec.DefaultOVMFSecboot)
	if err != nil {
		t.Fatal(err)
	}
	want, err := snp.SimLaunchDigest(snp.SNPParams{OVMF: code, VCPUs: 1, VCPUType: SimVCPUType})
	if err != nil {
		t.Fatal(err)
	}
	if g.Status.Measurement != hex.EncodeToString(want[:]) {
		t.Errorf("measurement %s, want the OVMF code's %x", g.Status.Measurement, want)
	}
	sub, _ := waitConsole(t, m, "signed", 0, reportRE, 120*time.Second)
	if sub[2] != g.Status.Measurement {
		t.Errorf("guest saw measurement %s, hostd computed %s", sub[2], g.Status.Measurement)
	}
	if !strings.HasPrefix(sub[6], "present") {
		t.Errorf("guest has no vTPM: %s", sub[6])
	}
	g = waitState(t, m, "signed", StateStopped, 30*time.Second)
	if g.Status.Reason != "guest powered off" {
		t.Errorf("reason = %q, want guest powered off", g.Status.Reason)
	}
	if err := m.Delete(ctx, "signed"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Status.UEFIVars); !os.IsNotExist(err) {
		t.Errorf("variable store left after delete: %v", err)
	}
}

// TestUEFIFirmwareWatchdog: firmware that never starts a boot image (here
// the 2 MiB OVMF build, which crashes on the 4 MiB build's variable store
// and hangs printing an exception) is stopped after the firmware timeout,
// and the guest is marked failed saying so.
func TestUEFIFirmwareWatchdog(t *testing.T) {
	stateDir := shortDir(t)
	killAll(t, stateDir)
	signer, err := sim.LoadOrCreate(filepath.Join(stateDir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	m, err := New(ctx, Options{StateDir: stateDir, Signer: signer, StopTimeout: 2 * time.Second,
		FirmwareTimeout: 5 * time.Second, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { m.Close(context.Background(), OnExitStop) }()
	esp := filepath.Join(t.TempDir(), "esp.img")
	if err := os.WriteFile(esp, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &spec.Spec{
		Name: "hung", TEE: spec.TEESim, VCPUs: 1, Memory: 512 << 20, Verifier: "127.0.0.1:9", VTPM: spec.VTPMNone,
		Image:    spec.Image{ESP: esp, UEFIVars: testboot.SnakeoilVars},
		Firmware: spec.Firmware{Path: "/usr/share/OVMF/OVMF_CODE.secboot.fd"},
	}
	if _, err := m.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, "hung"); err != nil {
		t.Fatal(err)
	}
	g := waitState(t, m, "hung", StateFailed, 90*time.Second)
	if g.Status.Reason != RefusalTimeoutPrefix+"5s" {
		t.Errorf("reason = %q, want %q", g.Status.Reason, RefusalTimeoutPrefix+"5s")
	}
}
