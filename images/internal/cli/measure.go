package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

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
}

func newMeasureCmd(env Env) *cobra.Command {
	var f measureFlags
	cmd := &cobra.Command{
		Use:   "measure (--ovmf OVMF.fd | --sim) [--kernel F --initrd F --append CMDLINE | --manifest F] --vcpus N [flags]",
		Short: "Compute the SEV-SNP or simulated launch measurement of a guest boot",
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
The vCPU count must be the guest spec's "vcpus": the digest covers it.

Output: the measurement in lower-case hex (96 digits), or with
--output-format json an object with the measurement and every input's
SHA-256.`, measure.DefaultSimFirmware, measure.SimVCPUType),
		Example: `  confidant-image measure --sim --manifest out/manifest.json --vcpus 2
  confidant-image measure --sim --kernel vmlinuz --initrd initrd.img \
    --append "console=ttyS0 panic=-1" --vcpus 2 --output-format json
  confidant-image measure --ovmf OVMF.amdsev.fd --kernel vmlinuz --initrd initrd.img \
    --append "console=ttyS0" --vcpus 4 --vcpu-type EPYC-Milan`,
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
	_ = cmd.MarkFlagRequired("vcpus") // the flag exists: error impossible
	cmd.MarkFlagsMutuallyExclusive("ovmf", "firmware")
	cmd.MarkFlagsMutuallyExclusive("ovmf", "sim")
	return cmd
}

// manifestBoot is the part of manifest.json measure reads.
type manifestBoot struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
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
	if m.Kernel == "" {
		return m, fmt.Errorf("%w: manifest %s names no kernel", ErrUsage, path)
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&m.Kernel, &m.Initrd} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return m, nil
}

func runMeasure(cmd *cobra.Command, f measureFlags, env Env) error {
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
