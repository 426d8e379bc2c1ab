package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/confidant-cvm/confidant/images/internal/build"
	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/images/internal/uki"
)

// bootFlags are build's flags of the boot mode.
type bootFlags struct {
	boot           string
	secureBootKey  string
	secureBootCert string
	ukiStub        string
	ovmfCode       string
	ovmfVars       string
	osRelease      string
}

// uefiOnlyFlags are the flags that only boot uefi takes.
var uefiOnlyFlags = []string{"secure-boot-key", "secure-boot-cert", "uki-stub", "ovmf-code", "ovmf-vars", "os-release"}

func (b *bootFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&b.boot, "boot", build.BootUEFI, "uefi (OVMF with Secure Boot boots the signed UKI from the ESP) or direct (SeaBIOS boots kernel, initrd and cmdline: the fast development mode)")
	fl.StringVar(&b.secureBootKey, "secure-boot-key", "", "PEM RSA private key (unencrypted) the UKI is signed with (required with --boot uefi)")
	fl.StringVar(&b.secureBootCert, "secure-boot-cert", "", "PEM certificate of --secure-boot-key, enrolled as PK, KEK and db in the variable store (required with --boot uefi)")
	fl.StringVar(&b.ukiStub, "uki-stub", uki.DefaultStub, "systemd's EFI stub the UKI is made from")
	fl.StringVar(&b.ovmfCode, "ovmf-code", measure.DefaultSimOVMFCode, "OVMF code image sim guests boot (the launch digest covers it; --tee sim)")
	fl.StringVar(&b.ovmfVars, "ovmf-vars", build.DefaultOVMFVars, "blank OVMF variable store template the certificate is enrolled into")
	fl.StringVar(&b.osRelease, "os-release", "", "os-release file put in the UKI (default: one naming the image and its version)")
}

// apply puts the boot flags into spec, and returns the problems of the
// flags.
func (b bootFlags) apply(spec *build.Spec, f buildFlags, changed func(string) bool) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...))
	}
	spec.Boot = b.boot
	switch b.boot {
	case build.BootUEFI:
		if b.secureBootKey == "" || b.secureBootCert == "" {
			bad("--boot uefi signs the UKI for Secure Boot: give --secure-boot-key KEY.pem and --secure-boot-cert CERT.pem "+
				"(your own pair, see images/README.md; for development only, Debian's TEST-ONLY snakeoil pair: "+
				"openssl rsa -passin pass:snakeoil -in %s -out snakeoil.key, then --secure-boot-key snakeoil.key --secure-boot-cert %s), "+
				"or use --boot direct (the development mode without Secure Boot)", uki.SnakeoilKey, uki.SnakeoilCert)
		}
		spec.SecureBootKey, spec.SecureBootCert = b.secureBootKey, b.secureBootCert
		spec.UKIStub, spec.UEFIVars, spec.OSRelease = b.ukiStub, b.ovmfVars, b.osRelease
		switch {
		case f.tee == build.TEESim && f.firmware != "":
			bad("--firmware is the SeaBIOS image of --boot direct; with --boot uefi the firmware is --ovmf-code")
		case f.tee == build.TEESim:
			spec.Firmware = b.ovmfCode
		case changed("ovmf-code"):
			bad("--ovmf-code is the simulated guest's firmware (--tee sim); for SEV-SNP give the OVMF image with --ovmf")
		}
	case build.BootDirect:
		for _, name := range uefiOnlyFlags {
			if changed(name) {
				bad("--%s is for --boot uefi, not --boot direct", name)
			}
		}
	default:
		bad("--boot %q: want uefi or direct", b.boot)
	}
	return errs
}

// printUEFI prints what a boot uefi build wrote beyond the direct boot's.
func printUEFI(w io.Writer, out string, m *build.Manifest) {
	if m.Boot != build.BootUEFI {
		return
	}
	fmt.Fprintf(w, "  uki        %s (signed for Secure Boot)\n", filepath.Join(out, m.UKI))
	fmt.Fprintf(w, "  esp        %s\n", filepath.Join(out, m.ESP))
	fmt.Fprintf(w, "  uefi vars  %s (the certificate enrolled as PK, KEK and db)\n", filepath.Join(out, m.UEFIVars))
	fmt.Fprintf(w, "  firmware   %s (measured)\n", m.Firmware)
	var idx []int
	for i := range m.PCRs {
		if n, err := strconv.Atoi(i); err == nil {
			idx = append(idx, n)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		fmt.Fprintf(w, "  predicted PCR %-2d %s\n", i, m.PCRs[strconv.Itoa(i)])
	}
}
