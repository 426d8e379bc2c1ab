package spec

import (
	"fmt"
	"os"
)

// DefaultOVMFSecboot is the OVMF code image sim guests boot by default:
// Debian's 4 MiB SMM build with Secure Boot support (package ovmf). Its
// bytes are what the simulated launch digest covers.
const DefaultOVMFSecboot = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"

// OVMFVars4MSize is the size of an OVMF_VARS_4M variable store (the
// firmware volume that goes with the 4 MiB code build as pflash unit 1).
const OVMFVars4MSize = 540672

// SeaBIOSOptIn is the spec text that opts a sim guest into the SeaBIOS
// development mode (direct kernel boot, no Secure Boot).
const SeaBIOSOptIn = "firmware: {kind: seabios}"

// SimUEFI reports whether the guest is a sim guest booting OVMF with
// Secure Boot from its image's ESP. Call after Resolve.
func (s *Spec) SimUEFI() bool { return s.TEE == TEESim && s.Firmware.Kind == FirmwareOVMF }

// validateSimUEFI checks the image of a sim guest that boots OVMF: an ESP
// and a variable store template, and no kernel, initrd or command line
// (they are inside the UKI; QEMU's -kernel would bypass Secure Boot).
func (s *Spec) validateSimUEFI(bad func(string, ...any), opts ValidateOptions) {
	switch {
	case s.Image.ESP == "" && (s.Image.Kernel != "" || s.Image.Initrd != ""):
		bad("image.esp: missing: this image was built for direct boot (kernel and initrd, no ESP with a signed UKI), "+
			"and sim guests boot UEFI with Secure Boot by default; rebuild it with `confidant-image build` "+
			"(a signed UKI), or opt into the SeaBIOS development mode (no Secure Boot) with `%s` in the spec", SeaBIOSOptIn)
		return
	case s.Image.ESP == "":
		bad("image.esp: missing (give it or a manifest with boot uefi); sim guests boot UEFI with Secure Boot by default, "+
			"the SeaBIOS development mode needs `%s`", SeaBIOSOptIn)
	default:
		if s.Image.Kernel != "" || s.Image.Initrd != "" || s.Image.Cmdline != "" {
			bad("image.kernel, image.initrd, image.cmdline: an ovmf guest boots the signed UKI on its ESP, " +
				"which holds them; hostd never boots ovmf guests with -kernel (it bypasses Secure Boot)")
		}
	}
	if s.Image.UEFIVars == "" {
		bad("image.uefi_vars: missing: an ovmf guest needs the image's UEFI variable store template " +
			"(with its Secure Boot certificates enrolled)")
	} else if !opts.SkipFileChecks && checkPath(s.Image.UEFIVars) == nil {
		if fi, err := os.Stat(s.Image.UEFIVars); err == nil && fi.Mode().IsRegular() && fi.Size() != OVMFVars4MSize {
			bad("image.uefi_vars: %s", VarsSizeError(fi.Size()))
		}
	}
	if s.Firmware.Path == "" {
		bad("firmware.path: missing (default %s)", DefaultOVMFSecboot)
	}
}

// VarsSizeError says why a variable store template of n bytes is refused.
func VarsSizeError(n int64) string {
	return fmt.Sprintf("%d bytes, want %d: not an OVMF_VARS_4M variable store (the 4 MiB OVMF build's pflash unit 1)", n, OVMFVars4MSize)
}
