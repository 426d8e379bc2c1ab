package snp

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Firmware files of the Debian packages scripts/install-deps.sh installs.
const (
	debianOVMFPath    = "/usr/share/ovmf/OVMF.fd"
	debianSeaBIOSPath = "/usr/share/seabios/bios-256k.bin"
)

// firmwarePackages names the Debian package of each firmware file.
var firmwarePackages = map[string]string{
	debianOVMFPath:    "ovmf",
	debianSeaBIOSPath: "seabios",
}

// installedFirmware reads a firmware file installed from a Debian package
// and returns it with "package version" for messages. A missing file fails
// the test: the tests need the firmware, and scripts/install-deps.sh
// installs it (CI runs it).
func installedFirmware(t *testing.T, path string) ([]byte, string) {
	t.Helper()
	pkg := packageVersion(firmwarePackages[path])
	fw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading firmware from Debian package %s (install it with scripts/install-deps.sh): %v", pkg, err)
	}
	return fw, pkg
}

// packageVersion returns "name version" of an installed Debian package, or
// the name and why the version is unknown.
func packageVersion(name string) string {
	if name == "" {
		return "no package"
	}
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", name).Output()
	if err != nil || len(out) == 0 {
		return name + " (version unknown: dpkg-query: " + strings.TrimSpace(errString(err)) + ")"
	}
	return name + " " + strings.TrimSpace(string(out))
}

func errString(err error) string {
	if err == nil {
		return "no output"
	}
	return err.Error()
}
