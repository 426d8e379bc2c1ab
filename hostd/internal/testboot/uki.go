package testboot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Debian's systemd-boot-efi stub and ovmf's test-only ("snakeoil")
// Secure Boot key, whose certificate OVMF_VARS_4M.snakeoil.fd enrols.
const (
	UKIStub      = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	SnakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key" // passphrase "snakeoil"
	SnakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	SnakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
)

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s (scripts/install-deps.sh installs it)", name, args, err, out)
	}
}

// BuildUKI makes an unsigned Unified Kernel Image of fix's kernel and
// initrd with cmdline, with objcopy from systemd's stub (section layout as
// in shared/FACTS.md), and returns its path under dir.
func BuildUKI(t testing.TB, dir string, fix Fixture, cmdline string) string {
	t.Helper()
	osrel := filepath.Join(dir, "os-release")
	cmd := filepath.Join(dir, "cmdline")
	for p, b := range map[string]string{osrel: "ID=confidant-test\nNAME=\"hostd test guest\"\n", cmd: cmdline} {
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(fix.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	initrdVMA := (0x40000 + fi.Size() + 0xffff) &^ 0xffff // after .linux, 64 KiB aligned
	out := filepath.Join(dir, "uki.efi")
	run(t, "objcopy",
		"--add-section", ".osrel="+osrel, "--change-section-vma", ".osrel=0x20000",
		"--add-section", ".cmdline="+cmd, "--change-section-vma", ".cmdline=0x30000",
		"--add-section", ".linux="+fix.Kernel, "--change-section-vma", ".linux=0x40000",
		"--add-section", ".initrd="+fix.Initrd, "--change-section-vma", ".initrd=0x"+strconv.FormatInt(initrdVMA, 16),
		UKIStub, out)
	return out
}

// SignSnakeoil signs uki with ovmf's test-only snakeoil key (sbsign) and
// returns the signed copy's path.
func SignSnakeoil(t testing.TB, dir, uki string) string {
	t.Helper()
	key := filepath.Join(dir, "snakeoil.key")
	run(t, "openssl", "rsa", "-passin", "pass:snakeoil", "-in", SnakeoilKey, "-out", key)
	out := filepath.Join(dir, "uki.signed.efi")
	run(t, "sbsign", "--key", key, "--cert", SnakeoilCert, "--output", out, uki)
	return out
}

// BuildESP makes a 64 MiB FAT EFI system partition holding uki at
// \EFI\BOOT\BOOTX64.EFI (mkfs.vfat and mtools: no loop device) and returns
// its path under dir.
func BuildESP(t testing.TB, dir, name, uki string) string {
	t.Helper()
	esp := filepath.Join(dir, name)
	run(t, "mkfs.vfat", "-C", esp, "65536")
	run(t, "mmd", "-i", esp, "::/EFI", "::/EFI/BOOT")
	run(t, "mcopy", "-i", esp, uki, "::/EFI/BOOT/BOOTX64.EFI")
	return esp
}
