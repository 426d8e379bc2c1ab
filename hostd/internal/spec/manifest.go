package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The manifest's boot kinds.
const (
	// BootUEFI: the image is a signed UKI on an ESP, booted by OVMF with
	// Secure Boot; kernel, initrd and cmdline are inside the UKI.
	BootUEFI = "uefi"
	// BootDirect: QEMU loads kernel and initrd itself (-kernel/-initrd).
	BootDirect = "direct"
)

// Manifest is the image manifest (manifest.json) written by
// `confidant-image build`. Fields other than these are ignored, so the image
// tool may add reference values and digests.
type Manifest struct {
	// Boot is "uefi" or "direct" ("" is direct, the older images).
	Boot    string `json:"boot"`
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	OSDisk  string `json:"os_disk"`
	// UKI is the signed Unified Kernel Image (informational: hostd boots
	// the ESP that holds it).
	UKI string `json:"uki"`
	// ESP is the FAT EFI system partition image with the UKI at
	// \EFI\BOOT\BOOTX64.EFI.
	ESP string `json:"esp"`
	// UEFIVars is the OVMF variable store template with the builder's
	// Secure Boot certificates enrolled.
	UEFIVars string `json:"uefi_vars"`
	// Firmware is the OVMF code image the launch digest covers.
	Firmware string `json:"firmware"`
}

// fill sets the image fields of s left empty from m; relative paths are
// relative to dir, the manifest's directory.
func (m *Manifest) fill(s *Spec, dir string) {
	fill := func(dst *string, v string, isPath bool) {
		if *dst != "" || v == "" {
			return
		}
		if isPath && !filepath.IsAbs(v) {
			v = filepath.Join(dir, v)
		}
		*dst = v
	}
	if m.Boot != BootUEFI {
		fill(&s.Image.Kernel, m.Kernel, true)
		fill(&s.Image.Initrd, m.Initrd, true)
		fill(&s.Image.Cmdline, m.Cmdline, false)
	}
	fill(&s.Image.OSDisk, m.OSDisk, true)
	// The ESP, the variable store and the OVMF code image the launch
	// digest covers apply to a guest that boots OVMF, never to one that
	// asked for SeaBIOS.
	if s.Firmware.Kind != FirmwareSeaBIOS {
		fill(&s.Image.ESP, m.ESP, true)
		fill(&s.Image.UEFIVars, m.UEFIVars, true)
	}
	if s.Firmware.Kind == "" || s.Firmware.Kind == FirmwareOVMF {
		fill(&s.Firmware.Path, m.Firmware, true)
	}
}

// LoadManifest reads an image manifest. Its paths, when relative, are
// relative to the manifest's directory.
func LoadManifest(path string) (*Manifest, error) { return loadManifest(path, "") }

// loadManifest reads a manifest; with stateDir set, one that resolves into
// it is refused before a byte is read.
func loadManifest(path, stateDir string) (*Manifest, error) {
	var f *os.File
	var err error
	if stateDir != "" {
		if err = checkPath(path); err == nil {
			f, err = OpenOutside(stateDir, path, os.O_RDONLY)
		}
		if errors.Is(err, ErrStateDir) {
			return nil, fmt.Errorf("%w: image.manifest: %w", ErrInvalid, err)
		}
	} else {
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: opening image manifest: %v", ErrInvalid, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading image manifest: %v", ErrInvalid, err)
	}
	return ParseManifest(b)
}

// ParseManifest decodes an image manifest. A direct-boot manifest needs
// kernel and initrd; a UEFI one (boot "uefi") needs esp and uefi_vars, and
// its kernel, initrd and cmdline, if any, are ignored (they are inside the
// UKI).
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%w: image manifest larger than %d bytes", ErrInvalid, maxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: decoding image manifest: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the image manifest", ErrInvalid)
	}
	var errs []error
	bad := func(s string) { errs = append(errs, errors.New(s)) }
	switch m.Boot {
	case "", BootDirect:
		if m.Kernel == "" {
			bad("manifest has no kernel")
		}
		if m.Initrd == "" {
			bad("manifest has no initrd")
		}
	case BootUEFI:
		if m.ESP == "" {
			bad("manifest (boot uefi) has no esp")
		}
		if m.UEFIVars == "" {
			bad("manifest (boot uefi) has no uefi_vars")
		}
	default:
		errs = append(errs, fmt.Errorf("manifest boot %q: want uefi or direct", m.Boot))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return &m, nil
}
