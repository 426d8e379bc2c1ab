package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/confidant-cvm/confidant/images/internal/build"
	"github.com/confidant-cvm/confidant/images/internal/keyregistry"
)

// buildSpec turns the flags into a build spec, reporting every problem of
// the flags themselves (the spec's are reported by build.Build).
func buildSpec(f buildFlags, changed func(string) bool, env Env) (build.Spec, error) {
	spec := baseSpec(f)
	var errs []error
	errs = append(errs, keySpec(&spec, f)...)
	errs = append(errs, firmwareFlagErrs(f)...)
	errs = append(errs, f.boot.apply(&spec, f, changed)...)
	if f.rootfsSize != "" {
		n, err := parseSize(f.rootfsSize)
		if err != nil {
			errs = append(errs, err)
		}
		spec.RootFSSize = n
	}
	errs = append(errs, initramfsContentSpec(&spec, f, changed)...)
	if f.swapSize != "" {
		n, err := parseSize(f.swapSize)
		if err != nil {
			errs = append(errs, err)
		}
		spec.AgentConfig.SwapSize = n
	}
	mtime, err := sourceDateEpoch(f.epoch, env)
	if err != nil {
		errs = append(errs, err)
	}
	spec.Mtime = mtime
	return spec, errors.Join(errs...)
}

// baseSpec is the spec the flags give directly.
func baseSpec(f buildFlags) build.Spec {
	spec := build.Spec{
		Name: f.name, Version: f.version, RootFS: f.rootfs, Kernel: f.kernel, Agent: f.agent, Out: f.out,
		CA: f.ca, Cmdline: f.cmdline, KeyFile: f.key.keyFile, GenerateKey: f.key.generateKey,
		UUID: f.key.uuid, Label: f.key.label, VCPUs: f.vcpus, VCPUType: f.vcpuType,
		Firmware: f.firmware, ToolVersion: toolVersion(),
		AgentConfig: build.AgentConfig{
			VerifierURL: f.verifierURL, AllowPlainHTTP: f.allowHTTP, TokenAudience: f.audience,
			KeyName: f.keyName, TEE: f.tee, TempDisk: f.tempDisk, Address: f.guestIP, Gateway: f.gateway,
			OnFailure: f.onFailure,
		},
	}
	if f.ovmf != "" {
		spec.Firmware = f.ovmf
	}
	return spec
}

// keySpec puts the disk key's origin, registry and release policy into spec.
func keySpec(spec *build.Spec, f buildFlags) []error {
	var errs []error
	switch f.keyOrigin {
	case "":
		spec.KeyOrigin = build.KeyOriginCustomer
		if f.adminSocket != "" && f.key.keyFile == "" {
			spec.KeyOrigin = build.KeyOriginPlatform
		}
	case build.KeyOriginPlatform:
		spec.KeyOrigin = f.keyOrigin
		if f.adminSocket == "" {
			errs = append(errs, fmt.Errorf("%w: a platform-managed key is made by the verifier: give its --admin-socket", ErrUsage))
		}
	case build.KeyOriginCustomer:
		spec.KeyOrigin = f.keyOrigin
	default:
		errs = append(errs, fmt.Errorf("%w: --key-origin %q: want platform or customer", ErrUsage, f.keyOrigin))
	}
	if spec.KeyOrigin == build.KeyOriginCustomer && f.key.keyFile == "" {
		errs = append(errs, fmt.Errorf("%w: a customer-managed key needs --key-file (with --generate-key for a new one); or let the verifier make the key with --admin-socket", ErrUsage))
	}
	if f.adminSocket != "" {
		c, err := keyregistry.NewClient(f.adminSocket, 0)
		if err != nil {
			errs = append(errs, err)
		}
		spec.Registry = c
	}
	if f.releasePolicy != "" {
		p, err := readReleasePolicy(f.releasePolicy)
		if err != nil {
			errs = append(errs, err)
		}
		spec.ReleasePolicy = p
	}
	return errs
}

// firmwareFlagErrs reports a firmware flag given for the other TEE.
func firmwareFlagErrs(f buildFlags) []error {
	var errs []error
	if f.tee == build.TEESim && f.ovmf != "" {
		errs = append(errs, fmt.Errorf("%w: --ovmf is for SEV-SNP; with --tee sim use --firmware", ErrUsage))
	}
	if f.tee != build.TEESim && f.firmware != "" {
		errs = append(errs, fmt.Errorf("%w: --firmware is for --tee sim; give the OVMF image with --ovmf", ErrUsage))
	}
	return errs
}

// initramfsContentSpec puts the initramfs's kernel modules, extra files and
// busybox into spec.
func initramfsContentSpec(spec *build.Spec, f buildFlags, changed func(string) bool) []error {
	var errs []error
	switch {
	case f.noModules:
	case f.modulesDir != "":
		spec.ModulesDir, spec.Modules = f.modulesDir, f.modules
	default:
		dir, err := modulesDirOf(f.kernel)
		if err != nil {
			errs = append(errs, err)
		}
		spec.ModulesDir, spec.Modules = dir, f.modules
	}
	addsBusybox := false
	for _, a := range f.add {
		x, err := parseAdd(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		spec.Extra = append(spec.Extra, x)
		addsBusybox = addsBusybox || filepath.Clean(x.Dst) == build.BusyboxPath
	}
	if (f.tempDisk != "" || changed("busybox")) && !addsBusybox {
		spec.Busybox = f.busybox
	}
	return errs
}

// readReleasePolicy reads a release policy file (build checks its content).
func readReleasePolicy(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening release policy: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, build.MaxReleasePolicy+1))
	if err != nil {
		return nil, fmt.Errorf("reading release policy: %w", err)
	}
	return b, nil
}

// modulesDirOf derives /lib/modules/VERSION from a kernel named
// vmlinuz-VERSION (Debian's /boot layout).
func modulesDirOf(kernel string) (string, error) {
	v, ok := strings.CutPrefix(filepath.Base(kernel), "vmlinuz-")
	if !ok || v == "" {
		return "", fmt.Errorf("%w: cannot tell the kernel version from %q: give --modules-dir (or --no-modules)", ErrUsage, kernel)
	}
	dir := filepath.Join("/lib/modules", v)
	if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err != nil {
		return "", fmt.Errorf("%w: no modules for kernel %s in %s: give --modules-dir (or --no-modules)", ErrUsage, v, dir)
	}
	return dir, nil
}

// parseSize parses a size in bytes with an optional K, M, G or T suffix
// (powers of 1024, optionally followed by "iB"); the result is whole MiB.
func parseSize(s string) (int64, error) {
	num := strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "B")
	shift := 0
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'K', 'k':
			shift = 10
		case 'M', 'm':
			shift = 20
		case 'G', 'g':
			shift = 30
		case 'T', 't':
			shift = 40
		}
		if shift > 0 {
			num = num[:n-1]
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 || v > 1<<(62-shift) || (v<<shift)%(1<<20) != 0 {
		return 0, fmt.Errorf("%w: size %q: want a positive whole number of MiB, e.g. 512M or 2G", ErrUsage, s)
	}
	return v << shift, nil
}
