package harness

import (
	"bytes"
	"debug/pe"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/confidant-cvm/confidant/shared/uefi"
)

// ErrNotTamperableUKI reports an ESP in which the UKI's .osrel section
// cannot be found exactly once.
var ErrNotTamperableUKI = errors.New("cannot find the UKI's .osrel section in the ESP exactly once")

// TamperESP writes to dst a copy of the FAT ESP image esp with one byte of
// the UKI it holds changed: the first lower-case letter of the UKI's .osrel
// section (the os-release text the stub measures) is upper-cased in place.
// uki is the same UKI as a file, used to find the section. The UKI still
// starts and runs the same kernel, initramfs and agent; its Authenticode
// signature no longer matches, and its measurements (PCR 4 and 11) differ.
// It returns a description of the change.
func TamperESP(dst, esp, uki string) (string, error) {
	osrel, err := sectionBytes(uki, ".osrel")
	if err != nil {
		return "", fmt.Errorf("tampering with the ESP: %w", err)
	}
	img, err := os.ReadFile(esp)
	if err != nil {
		return "", fmt.Errorf("tampering with the ESP: %w", err)
	}
	at := bytes.Index(img, osrel)
	if at < 0 || bytes.Contains(img[at+1:], osrel) {
		return "", ErrNotTamperableUKI
	}
	i := bytes.IndexFunc(osrel, func(r rune) bool { return r >= 'a' && r <= 'z' })
	if i < 0 {
		return "", fmt.Errorf("tampering with the ESP: .osrel has no lower-case letter")
	}
	old := img[at+i]
	img[at+i] = old - 'a' + 'A'
	if err := os.WriteFile(dst, img, 0o644); err != nil {
		return "", fmt.Errorf("tampering with the ESP: %w", err)
	}
	return fmt.Sprintf("changed 1 byte of the signed UKI on the ESP: .osrel byte %d %q -> %q (ESP offset %d)",
		i, string(old), string(img[at+i]), at+i), nil
}

// sectionBytes returns the bytes of a PE file's section, its VirtualSize
// long (the raw data is padded to the file alignment).
func sectionBytes(path, name string) ([]byte, error) {
	f, err := pe.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(name)
	if s == nil {
		return nil, fmt.Errorf("%s has no %s section", path, name)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("reading %s of %s: %w", name, path, err)
	}
	if int(s.VirtualSize) < len(b) {
		b = b[:s.VirtualSize]
	}
	return b, nil
}

// UEFIVarsPath is a UEFI guest's own variable store in hostd's state,
// beside its vTPM state.
func (h *Hostd) UEFIVarsPath(name string) string {
	return filepath.Join(h.StateDir, "guests", name, "uefi-vars.fd")
}

// SetSecureBoot switches Secure Boot on or off in the variable store at
// path, as the host, which owns that file, can: it writes OVMF's
// SecureBootEnable variable. The file is replaced atomically.
func SetSecureBoot(path string, on bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("setting Secure Boot: %w", err)
	}
	vs, err := uefi.ParseVarStore(raw)
	if err != nil {
		return fmt.Errorf("setting Secure Boot in %s: %w", path, err)
	}
	if err := vs.SetSecureBootEnable(on); err != nil {
		return fmt.Errorf("setting Secure Boot in %s: %w", path, err)
	}
	out, err := vs.Bytes()
	if err != nil {
		return fmt.Errorf("setting Secure Boot in %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("setting Secure Boot: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("setting Secure Boot: %w", err)
	}
	return nil
}

// PredictedPCRs returns the sha256 PCR values (by decimal index) that
// confidant-image predicted for the image and wrote into its reference
// values for the simulated TEE.
func (im *Image) PredictedPCRs() (map[string][]string, error) {
	b, err := os.ReadFile(im.ReferenceValuesPath())
	if err != nil {
		return nil, fmt.Errorf("reading reference values: %w", err)
	}
	var ref map[string]json.RawMessage
	if err := json.Unmarshal(b, &ref); err != nil {
		return nil, fmt.Errorf("decoding reference values: %w", err)
	}
	var sim struct {
		PCRs map[string]map[string][]string `json:"pcrs"`
	}
	if err := json.Unmarshal(ref["sim-sev-snp"], &sim); err != nil {
		return nil, fmt.Errorf("decoding the sim-sev-snp reference values: %w", err)
	}
	if len(sim.PCRs["sha256"]) == 0 {
		return nil, fmt.Errorf("the image's reference values pin no sha256 PCR")
	}
	return sim.PCRs["sha256"], nil
}
