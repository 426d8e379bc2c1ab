package build

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/images/internal/uki"
	"github.com/confidant-cvm/confidant/shared/uefi"
)

// Boot modes.
const (
	// BootUEFI: the guest boots OVMF with Secure Boot enforced, which
	// verifies and measures the signed UKI on the ESP (the production path).
	BootUEFI = "uefi"
	// BootDirect: SeaBIOS boots the kernel, initrd and command line of the
	// manifest directly (the fast development mode; no Secure Boot).
	BootDirect = "direct"
)

// Files of a BootUEFI image.
const (
	UKIFile      = "uki.efi"
	ESPFile      = "esp.img"
	UEFIVarsFile = "uefi-vars.fd"
)

// DefaultOVMFVars is the blank OVMF variable store template the builder's
// certificate is enrolled into (Debian's ovmf, 4 MiB build).
const DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"

// SecureBootOwner is the SignatureOwner GUID of the certificate the build
// enrolls as KEK and db (it is part of the db entry PCR 7 measures); PK's
// is the global variable GUID, as OVMF's EnrollDefaultKeys writes it.
const SecureBootOwner = "6155a7df-f670-4385-8d51-4bfa246e92c7"

// maxVarStore caps the variable store template read.
const maxVarStore = 16 << 20

// PCREvent is one predicted event of the boot's OS part, as the manifest
// records it (to explain a mismatch with a guest's event log).
type PCREvent struct {
	PCR int `json:"pcr"`
	// Type is the TCG event type, TypeName its name.
	Type     uint32 `json:"type"`
	TypeName string `json:"type_name"`
	// Digest is the hex SHA-256 extended into the PCR.
	Digest string `json:"digest"`
	// Description says what was measured.
	Description string `json:"description"`
}

// eventTypeName names the TCG event types of PCRs 4, 7 and 11 (TCG PC
// Client Platform Firmware Profile, 10.4.1).
func eventTypeName(t uint32) string {
	switch t {
	case uefi.EvIPL:
		return "EV_IPL"
	case uefi.EvSeparator:
		return "EV_SEPARATOR"
	case uefi.EvEFIVariableDriverConfig:
		return "EV_EFI_VARIABLE_DRIVER_CONFIG"
	case uefi.EvEFIBootServicesApplication:
		return "EV_EFI_BOOT_SERVICES_APPLICATION"
	case uefi.EvEFIVariableAuthority:
		return "EV_EFI_VARIABLE_AUTHORITY"
	case uefi.EvEFIAction:
		return "EV_EFI_ACTION"
	}
	return "0x" + strconv.FormatUint(uint64(t), 16)
}

// PCREvents turns predicted events into the manifest's form.
func PCREvents(events []uefi.Event) []PCREvent {
	out := make([]PCREvent, 0, len(events))
	for _, e := range events {
		out = append(out, PCREvent{PCR: e.PCR, Type: e.Type, TypeName: eventTypeName(e.Type),
			Digest: hex.EncodeToString(e.Digest), Description: e.Desc})
	}
	return out
}

// PCRValues renders replayed PCRs as {"4": HEX, ...}.
func PCRValues(pcrs map[int][]byte) map[string]string {
	out := make(map[string]string, len(pcrs))
	for i, v := range pcrs {
		out[strconv.Itoa(i)] = hex.EncodeToString(v)
	}
	return out
}

// boot is the spec's boot mode, "" meaning BootUEFI.
func (s *Spec) boot() string {
	if s.Boot == "" {
		return BootUEFI
	}
	return s.Boot
}

// checkBoot checks the boot mode's part of the spec.
func (s *Spec) checkBoot(bad func(string, ...any)) {
	switch s.boot() {
	case BootUEFI:
		if s.SecureBootKey == "" || s.SecureBootCert == "" {
			bad("boot uefi signs the UKI for Secure Boot: the signing key and its certificate are required (your own PK/KEK/db pair; for development only, Debian's test-only snakeoil pair %s, decrypted, with %s)",
				uki.SnakeoilKey, uki.SnakeoilCert)
		}
	case BootDirect:
		for _, f := range []struct{ what, v string }{
			{"Secure Boot key", s.SecureBootKey}, {"Secure Boot certificate", s.SecureBootCert},
			{"UKI stub", s.UKIStub}, {"OVMF variable store template", s.UEFIVars}, {"os-release", s.OSRelease},
		} {
			if f.v != "" {
				bad("the %s is for boot uefi, not boot direct", f.what)
			}
		}
	default:
		bad("boot %q: want %s or %s", s.Boot, BootUEFI, BootDirect)
	}
}

// firmware is the firmware image the launch digest covers: for the
// simulation with boot uefi the OVMF code image ("":
// measure.DefaultSimOVMFCode), else Spec.Firmware.
func (s *Spec) firmware(kind measure.Kind) string {
	if kind == measure.KindSim && s.boot() == BootUEFI && s.Firmware == "" {
		return measure.DefaultSimOVMFCode
	}
	return s.Firmware
}

// measurements computes the launch digests, one per vCPU count, of the
// files in stage: with boot direct over the firmware, kernel, initrd and
// command line; with boot uefi over the firmware only (the OS is measured
// into the PCRs).
func (s *Spec) measurements(kind measure.Kind, stage string) ([]measure.Measurement, error) {
	var out []measure.Measurement
	for _, n := range s.VCPUs {
		in := measure.Inputs{Kind: kind, Firmware: s.firmware(kind), VCPUs: n, VCPUType: s.vcpuType(kind)}
		if s.boot() == BootDirect {
			in.Kernel, in.Initrd, in.Cmdline = filepath.Join(stage, KernelFile), filepath.Join(stage, InitrdFile), s.Cmdline
		}
		mm, err := measure.Compute(in)
		if err != nil {
			return nil, err
		}
		// Record the artifacts by their names in the output directory.
		if mm.Kernel != nil {
			mm.Kernel.Path = KernelFile
		}
		if mm.Initrd != nil {
			mm.Initrd.Path = InitrdFile
		}
		out = append(out, *mm)
	}
	return out, nil
}

// osRelease is the UKI's os-release: the file named, or one naming the
// image.
func (s *Spec) osRelease() ([]byte, error) {
	if s.OSRelease != "" {
		b, err := os.ReadFile(s.OSRelease)
		if err != nil {
			return nil, fmt.Errorf("reading os-release: %w", err)
		}
		return b, nil
	}
	q := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
	return fmt.Appendf(nil, "NAME=\"Confidant\"\nID=confidant\nPRETTY_NAME=\"Confidant image %s %s\"\nIMAGE_ID=%s\nIMAGE_VERSION=\"%s\"\n",
		s.Name, q.Replace(s.Version), s.Name, q.Replace(s.Version)), nil
}

// makeUEFI makes the boot artifacts of a BootUEFI image in stage from the
// kernel and initrd there: the UKI (unsigned under a temporary name, then
// signed as UKIFile), the ESP holding it, and the variable store with the
// builder's certificate enrolled as PK, KEK and db. It predicts and
// records in m what the boot measures into PCRs 4, 7 and 11.
func (s *Spec) makeUEFI(ctx context.Context, stage string, kind measure.Kind, m *Manifest, step func(string)) error {
	at := func(name string) string { return filepath.Join(stage, name) }
	cert, err := uki.ReadSigner(s.SecureBootKey, s.SecureBootCert)
	if err != nil {
		return err
	}
	osrel, err := s.osRelease()
	if err != nil {
		return err
	}
	step("making and signing the UKI")
	unsigned := at(".uki.unsigned.efi")
	if err := uki.Build(ctx, uki.Inputs{Stub: s.UKIStub, Kernel: at(KernelFile), Initrd: at(InitrdFile),
		Cmdline: []byte(s.Cmdline), OSRelease: osrel, Epoch: s.Mtime}, unsigned); err != nil {
		return err
	}
	if err := uki.Sign(ctx, s.SecureBootKey, s.SecureBootCert, unsigned, at(UKIFile)); err != nil {
		return err
	}
	if err := os.Remove(unsigned); err != nil {
		return fmt.Errorf("removing the unsigned UKI: %w", err)
	}
	step("making the ESP and the UEFI variable store")
	if err := uki.MakeESP(ctx, at(UKIFile), at(ESPFile)); err != nil {
		return err
	}
	vars, err := s.enrolledVars(cert)
	if err != nil {
		return err
	}
	if err := os.WriteFile(at(UEFIVarsFile), vars, 0o644); err != nil {
		return fmt.Errorf("writing the UEFI variable store: %w", err)
	}

	step("predicting PCRs 4, 7 and 11")
	image, err := os.ReadFile(at(UKIFile))
	if err != nil {
		return fmt.Errorf("reading the signed UKI: %w", err)
	}
	events, err := PredictPCRs(image, vars)
	if err != nil {
		return err
	}
	fw, err := filepath.Abs(s.firmware(kind))
	if err != nil {
		return fmt.Errorf("resolving the firmware path: %w", err)
	}
	m.Firmware = fw
	m.Boot, m.Kernel, m.Initrd, m.Cmdline = BootUEFI, "", "", ""
	m.UKI, m.ESP, m.UEFIVars = UKIFile, ESPFile, UEFIVarsFile
	m.PCRs, m.PCREvents = PCRValues(uefi.Replay(events)), PCREvents(events)
	return nil
}

// PredictPCRs predicts the events of the OS part of a Secure Boot boot of
// the signed UKI image with the variable store vars (an OVMF VARS image).
func PredictPCRs(image, vars []byte) ([]uefi.Event, error) {
	store, err := uefi.ParseVarStore(vars)
	if err != nil {
		return nil, fmt.Errorf("predicting PCRs: %w", err)
	}
	events, err := uefi.PredictOS(image, store)
	if err != nil {
		return nil, fmt.Errorf("predicting PCRs: %w", err)
	}
	return events, nil
}

// enrolledVars reads the variable store template and enrolls cert as PK,
// KEK and db, owned by SecureBootOwner.
func (s *Spec) enrolledVars(cert *x509.Certificate) ([]byte, error) {
	tmpl := s.UEFIVars
	if tmpl == "" {
		tmpl = DefaultOVMFVars
	}
	st, err := os.Stat(tmpl)
	if err != nil {
		return nil, fmt.Errorf("reading the UEFI variable store template: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() > maxVarStore {
		return nil, fmt.Errorf("%w: the UEFI variable store template %s is not a regular file of at most %d bytes", ErrSpec, tmpl, maxVarStore)
	}
	b, err := os.ReadFile(tmpl)
	if err != nil {
		return nil, fmt.Errorf("reading the UEFI variable store template: %w", err)
	}
	store, err := uefi.ParseVarStore(b)
	if err != nil {
		return nil, fmt.Errorf("%w: the UEFI variable store template %s: %v", ErrSpec, tmpl, err)
	}
	owner, err := uefi.ParseGUID(SecureBootOwner)
	if err != nil {
		return nil, fmt.Errorf("parsing the signature owner: %w", err)
	}
	certs := []*x509.Certificate{cert}
	if err := uefi.EnrollSecureBoot(store, owner, certs, certs, certs); err != nil {
		return nil, fmt.Errorf("enrolling the Secure Boot certificate: %w", err)
	}
	out, err := store.Bytes()
	if err != nil {
		return nil, fmt.Errorf("writing the UEFI variable store: %w", err)
	}
	return out, nil
}
