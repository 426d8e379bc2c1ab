package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/images/internal/build"
	"github.com/confidant-cvm/confidant/images/internal/measure"
)

type measureFlags struct {
	sim           bool
	firmware      string
	ovmf          string
	kernel        string
	initrd        string
	cmdline       string
	manifest      string
	vcpus         int
	vcpuType      string
	guestFeatures uint64
	vmmType       string
	format        string
	json          bool
	pcrs          bool
	uki           string
	uefiVars      string
}

func newMeasureCmd(env Env) *cobra.Command {
	var f measureFlags
	cmd := &cobra.Command{
		Use:   "measure (--ovmf OVMF.fd | --sim) [--kernel F --initrd F --append CMDLINE | --manifest F] --vcpus N [flags]\n  confidant-image measure --uki UKI.efi --uefi-vars VARS.fd | --pcrs --manifest F",
		Short: "Compute the launch measurement of a guest boot, or predict its PCRs 4, 7 and 11",
		Long: fmt.Sprintf(`Compute the launch measurement (the MEASUREMENT field of the guest's
attestation report) of a measured direct boot: firmware, kernel, initrd and
kernel command line, with the vCPU count and model.

Without --sim: the SEV-SNP launch digest of an OVMF guest started by QEMU
with kernel-hashes=on (sev-snp-measure's --mode snp). --ovmf must be an OVMF
built from OvmfPkg/AmdSev (with the SNP_KERNEL_HASHES section); without
--kernel, the digest of a boot without measured direct boot.

With --sim: the simulated TEE's digest, exactly what confidant-hostd's
simulated secure processor puts in the reports of a sim guest booted with
the same files: --firmware defaults to %s (hostd's SeaBIOS), the
vCPU model is always %s (whatever -cpu QEMU runs), and the command line is
taken verbatim — hostd passes the manifest's cmdline to -append unchanged.

--manifest reads kernel, initrd and cmdline from a manifest.json written by
"confidant-image build" (relative to the manifest); flags given override it.
For a manifest of boot uefi the digest covers the firmware alone (the
manifest's "firmware", the OVMF code image, unless --firmware or --ovmf is
given). The vCPU count must be the guest spec's "vcpus": the digest covers it.

Output: the measurement in lower-case hex (96 digits), or with
--output-format json (or --json) an object with the measurement and every
input's SHA-256.

PCR prediction (--uki and --uefi-vars, or --pcrs with --manifest, which names
them): the events OVMF with Secure Boot and systemd's UKI stub measure into
the vTPM when that UKI boots with that variable store (the guest's copy of
the manifest's uefi_vars), and the SHA-256 PCR values they replay to:

  PCR 4   the boot action, the separator, the UKI's Authenticode digest
  PCR 7   SecureBoot, PK, KEK, db, dbx, the separator, the db entry that
          verified the UKI
  PCR 11  each UKI section's name and bytes (.linux .osrel .cmdline .initrd)

Firmware-only PCRs 0-3 are not predicted (they depend on the firmware build
and the VM shape, not on the image). Output: each event and the final values,
or with --json {"pcrs": {"sha256": {"4": HEX, ...}}, "events": [...]}.`, measure.DefaultSimFirmware, measure.SimVCPUType),
		Example: `  confidant-image measure --sim --manifest out/manifest.json --vcpus 2
  confidant-image measure --sim --kernel vmlinuz --initrd initrd.img \
    --append "console=ttyS0 panic=-1" --vcpus 2 --output-format json
  confidant-image measure --ovmf OVMF.amdsev.fd --kernel vmlinuz --initrd initrd.img \
    --append "console=ttyS0" --vcpus 4 --vcpu-type EPYC-Milan
  confidant-image measure --uki out/uki.efi --uefi-vars out/uefi-vars.fd
  confidant-image measure --pcrs --manifest out/manifest.json --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMeasure(cmd, f, env)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.sim, "sim", false, "compute the simulated TEE's digest (confidant-hostd sim guests)")
	fl.StringVar(&f.ovmf, "ovmf", "", "OVMF AmdSev firmware image (SEV-SNP)")
	fl.StringVar(&f.firmware, "firmware", "", "firmware image; with --sim default "+measure.DefaultSimFirmware+" (same as --ovmf otherwise)")
	fl.StringVar(&f.kernel, "kernel", "", "kernel (-kernel)")
	fl.StringVar(&f.initrd, "initrd", "", "initrd (-initrd)")
	fl.StringVar(&f.cmdline, "append", "", "kernel command line (-append), byte for byte")
	fl.StringVar(&f.manifest, "manifest", "", "take kernel, initrd and cmdline from this manifest.json")
	fl.IntVar(&f.vcpus, "vcpus", 0, "number of vCPUs (required)")
	fl.StringVar(&f.vcpuType, "vcpu-type", "", "QEMU vCPU model (default "+measure.DefaultVCPUType+"; --sim: always "+measure.SimVCPUType+")")
	fl.Uint64Var(&f.guestFeatures, "guest-features", 0, "VMSA SEV_FEATURES, e.g. 0x21 (default 0x1)")
	fl.StringVar(&f.vmmType, "vmm-type", "", "QEMU or EC2 (default QEMU)")
	fl.StringVar(&f.format, "output-format", "hex", "hex or json")
	fl.BoolVar(&f.json, "json", false, "the same as --output-format json")
	fl.BoolVar(&f.pcrs, "pcrs", false, "predict PCRs 4, 7 and 11 of the --manifest's uki and uefi_vars")
	fl.StringVar(&f.uki, "uki", "", "predict PCRs 4, 7 and 11 of this signed UKI (with --uefi-vars)")
	fl.StringVar(&f.uefiVars, "uefi-vars", "", "the OVMF variable store the UKI boots with (with --uki)")
	cmd.MarkFlagsMutuallyExclusive("ovmf", "firmware")
	cmd.MarkFlagsMutuallyExclusive("ovmf", "sim")
	return cmd
}

// manifestBoot is the part of manifest.json measure reads.
type manifestBoot struct {
	Boot     string `json:"boot"`
	Kernel   string `json:"kernel"`
	Initrd   string `json:"initrd"`
	Cmdline  string `json:"cmdline"`
	Firmware string `json:"firmware"`
	UKI      string `json:"uki"`
	UEFIVars string `json:"uefi_vars"`
}

func readManifestBoot(path string) (manifestBoot, error) {
	var m manifestBoot
	b, err := os.ReadFile(path)
	if err != nil {
		return m, fmt.Errorf("reading manifest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: decoding manifest %s: %v", ErrUsage, path, err)
	}
	switch {
	case m.Boot == build.BootUEFI && (m.UKI == "" || m.UEFIVars == "" || m.Firmware == ""):
		return m, fmt.Errorf("%w: manifest %s of boot uefi names no uki, uefi_vars or firmware", ErrUsage, path)
	case m.Boot != build.BootUEFI && m.Kernel == "":
		return m, fmt.Errorf("%w: manifest %s names no kernel", ErrUsage, path)
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&m.Kernel, &m.Initrd, &m.UKI, &m.UEFIVars} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return m, nil
}

func runMeasure(cmd *cobra.Command, f measureFlags, env Env) error {
	if f.json {
		f.format = "json"
	}
	if f.pcrs || f.uki != "" || f.uefiVars != "" {
		return runPredict(cmd, f, env)
	}
	if !cmd.Flags().Changed("vcpus") {
		return fmt.Errorf("%w: --vcpus is required for a launch measurement (the digest covers the count)", ErrUsage)
	}
	in := measure.Inputs{
		Kind: measure.KindSNP, Firmware: f.firmware, Kernel: f.kernel, Initrd: f.initrd, Cmdline: f.cmdline,
		VCPUs: f.vcpus, VCPUType: f.vcpuType, GuestFeatures: f.guestFeatures, VMMType: f.vmmType,
	}
	if f.ovmf != "" {
		in.Firmware = f.ovmf
	}
	if f.sim {
		in.Kind = measure.KindSim
	}
	if f.format != "hex" && f.format != "json" {
		return fmt.Errorf("%w: --output-format %q: want hex or json", ErrUsage, f.format)
	}
	if f.manifest != "" {
		m, err := readManifestBoot(f.manifest)
		if err != nil {
			return err
		}
		if !cmd.Flags().Changed("kernel") {
			in.Kernel = m.Kernel
		}
		if !cmd.Flags().Changed("initrd") {
			in.Initrd = m.Initrd
		}
		if !cmd.Flags().Changed("append") {
			in.Cmdline = m.Cmdline
		}
		if m.Boot == build.BootUEFI && in.Firmware == "" {
			in.Firmware = m.Firmware
		}
	}
	m, err := measure.Compute(in)
	if err != nil {
		return err
	}
	return printMeasurement(env.Stdout, m, f.format)
}

func printMeasurement(w io.Writer, m *measure.Measurement, format string) error {
	if format == "hex" {
		_, err := fmt.Fprintln(w, m.Measurement)
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding measurement: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
