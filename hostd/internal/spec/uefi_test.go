package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// uefiImage writes an image directory as `confidant-image build` lays out
// a UEFI image: ESP, variable store template, OVMF code and a manifest.
func uefiImage(t *testing.T, varsSize int) string {
	t.Helper()
	dir := imageDir(t)
	for f, n := range map[string]int{"esp.img": 4096, "uefi-vars.fd": varsSize, "OVMF_CODE.fd": 4096} {
		if err := os.WriteFile(filepath.Join(dir, f), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := `{"boot":"uefi","uki":"uki.efi","esp":"esp.img","uefi_vars":"uefi-vars.fd","firmware":"OVMF_CODE.fd","os_disk":"os.img"}`
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const uefiYAML = "name: u\ntee: sim\nvcpus: 1\nmemory: 512MiB\nverifier: localhost:1\nimage:\n  manifest: manifest.json\n"

func TestSimUEFIFromManifest(t *testing.T) {
	dir := uefiImage(t, OVMFVars4MSize)
	s, err := parse(t, uefiYAML, dir)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if !s.SimUEFI() || s.Firmware.Kind != FirmwareOVMF {
		t.Errorf("firmware kind %q, want ovmf by default for an image with an ESP", s.Firmware.Kind)
	}
	if s.Image.ESP != filepath.Join(dir, "esp.img") || s.Image.UEFIVars != filepath.Join(dir, "uefi-vars.fd") ||
		s.Firmware.Path != filepath.Join(dir, "OVMF_CODE.fd") || s.Image.OSDisk != filepath.Join(dir, "os.img") {
		t.Errorf("manifest not applied: image %+v firmware %+v", s.Image, s.Firmware)
	}
	if s.Image.Kernel != "" || s.Image.Initrd != "" || s.Image.Cmdline != "" {
		t.Errorf("an ovmf guest got direct boot files: %+v", s.Image)
	}
	checkJSONRoundTrip(t, s)

	// Without a firmware in the manifest: Debian's Secure Boot build.
	s, err = ParseYAML([]byte("name: u\ntee: sim\nimage:\n  esp: /e\n  uefi_vars: /v\n"), "/")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Resolve(); err != nil {
		t.Fatal(err)
	}
	if s.Firmware.Kind != FirmwareOVMF || s.Firmware.Path != DefaultOVMFSecboot {
		t.Errorf("default sim firmware = %+v, want ovmf at %s", s.Firmware, DefaultOVMFSecboot)
	}
}

// TestSeaBIOSIgnoresUEFIManifest: a guest that opts into SeaBIOS takes no
// ESP, variable store or OVMF code image from the manifest.
func TestSeaBIOSIgnoresUEFIManifest(t *testing.T) {
	dir := uefiImage(t, OVMFVars4MSize)
	s, err := ParseYAML([]byte(uefiYAML+seabiosLines), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Resolve(); err != nil {
		t.Fatal(err)
	}
	if s.Image.ESP != "" || s.Image.UEFIVars != "" || s.Firmware.Path != DefaultSeaBIOS {
		t.Errorf("seabios guest took UEFI files: image %+v firmware %+v", s.Image, s.Firmware)
	}
	// The UKI image has no kernel for direct boot: refused, by name.
	if err := s.Validate(ValidateOptions{}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "image.kernel") {
		t.Errorf("Validate = %v, want image.kernel missing", err)
	}
}

func TestSimUEFIRejects(t *testing.T) {
	dir := uefiImage(t, OVMFVars4MSize)
	short := uefiImage(t, 131072) // the 2 MiB build's VARS
	tests := map[string]struct {
		dir, yaml, wantSub string
	}{
		"kernel with esp":  {dir: dir, yaml: uefiYAML + "  kernel: vmlinuz\n", wantSub: "bypasses Secure Boot"},
		"cmdline with esp": {dir: dir, yaml: uefiYAML + "  cmdline: x\n", wantSub: "image.cmdline"},
		"no vars":          {dir: dir, yaml: "name: u\ntee: sim\nvcpus: 1\nmemory: 512MiB\nverifier: a:1\nimage:\n  esp: esp.img\n", wantSub: "image.uefi_vars: missing"},
		"no esp":           {dir: dir, yaml: "name: u\ntee: sim\nvcpus: 1\nmemory: 512MiB\nverifier: a:1\nimage:\n  uefi_vars: uefi-vars.fd\n", wantSub: "image.esp: missing"},
		"vars wrong size":  {dir: short, yaml: uefiYAML, wantSub: "not an OVMF_VARS_4M"},
		"esp with seabios": {dir: dir, yaml: strings.Replace(goodYAML, "  os_disk: os.img\n", "  os_disk: os.img\n  esp: esp.img\n", 1), wantSub: "only sim guests with firmware.kind ovmf"},
		"esp not a file":   {dir: dir, yaml: uefiYAML + "  esp: /dev/zero\n", wantSub: "image.esp"},
		"vars in seabios":  {dir: dir, yaml: strings.Replace(goodYAML, "  os_disk: os.img\n", "  os_disk: os.img\n  uefi_vars: uefi-vars.fd\n", 1), wantSub: "only sim guests with firmware.kind ovmf"},
		"snp with esp": {dir: dir, yaml: strings.Replace(strings.Replace(directYAML, "tee: sim", "tee: sev-snp", 1), "  os_disk: os.img\n", "  os_disk: os.img\n  esp: esp.img\n", 1) +
			"firmware:\n  kind: ovmf\n  path: OVMF.fd\n", wantSub: "only sim guests with firmware.kind ovmf"},
		"bad manifest boot": {dir: dir, yaml: "name: u\ntee: sim\nvcpus: 1\nmemory: 512MiB\nverifier: a:1\nimage:\n  manifest: bad.json\n", wantSub: "want uefi or direct"},
	}
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"boot":"bios","esp":"e"}`), 0o644)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, tc.yaml, tc.dir)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantSub) {
				t.Fatalf("error = %v, want ErrInvalid mentioning %q", err, tc.wantSub)
			}
		})
	}
}

func TestParseUEFIManifest(t *testing.T) {
	for name, tc := range map[string]struct {
		body, wantSub string
	}{
		"uefi without esp":  {body: `{"boot":"uefi","uefi_vars":"v"}`, wantSub: "no esp"},
		"uefi without vars": {body: `{"boot":"uefi","esp":"e"}`, wantSub: "no uefi_vars"},
		"unknown boot":      {body: `{"boot":"bios","kernel":"k","initrd":"i"}`, wantSub: "want uefi or direct"},
		"direct no kernel":  {body: `{"boot":"direct","initrd":"i"}`, wantSub: "no kernel"},
	} {
		if _, err := ParseManifest([]byte(tc.body)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantSub) {
			t.Errorf("%s: ParseManifest = %v, want ErrInvalid mentioning %q", name, err, tc.wantSub)
		}
	}
	m, err := ParseManifest([]byte(`{"boot":"uefi","esp":"e","uefi_vars":"v","firmware":"/f","kernel":"k"}`))
	if err != nil || m.ESP != "e" || m.UEFIVars != "v" || m.Firmware != "/f" {
		t.Fatalf("ParseManifest(uefi) = %+v, %v", m, err)
	}
}
