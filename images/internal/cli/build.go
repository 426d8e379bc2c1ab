package cli

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/confidant-cvm/confidant/images/internal/build"
	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/images/internal/uki"
	"github.com/confidant-cvm/confidant/shared/termsafe"
)

// Defaults of build for a guest of confidant-hostd: QEMU user networking
// (the guest is 10.0.2.15/24, the verifier is forwarded at 10.0.2.100) and
// a serial console.
const (
	DefaultCmdline = "console=ttyS0 panic=-1"
	DefaultGuestIP = "10.0.2.15/24"
)

type buildFlags struct {
	name, version string
	rootfs        string
	rootfsSize    string
	kernel        string
	agent         string
	out           string
	verifierURL   string
	allowHTTP     bool
	ca            string
	audience      string
	keyName       string
	tee           string
	tempDisk      string
	swapSize      string
	busybox       string
	guestIP       string
	gateway       string
	onFailure     string
	cmdline       string
	vcpus         []int
	vcpuType      string
	firmware      string
	ovmf          string
	modulesDir    string
	modules       []string
	noModules     bool
	add           []string
	epoch         string
	key           keyFlags
	adminSocket   string
	keyOrigin     string
	releasePolicy string
	boot          bootFlags
}

// buildLongFormat is build's long help; buildLong fills in the file names.
const buildLongFormat = `Build everything a Confidant guest boots from into one new directory --out:

  %-22s the kernel (--kernel), copied
  %-22s the initramfs: --agent as /init, the generated agent
                         configuration, the verifier CA (--ca), kernel modules,
                         with --temp-disk a static busybox (--busybox)
  %-22s that agent configuration: verifier URL, key name, the
                         OS disk's LUKS UUID, TEE interface, network, temp disk
  %-22s --rootfs encrypted into LUKS2 (a directory is first made
                         into ext4 with mke2fs -t ext4 -b 4096 -d)
  %-22s the launch measurements, in the verifier's reference
                         values format, one per --vcpus count, and with
                         --boot uefi the predicted PCRs 4, 7 and 11
  %-22s the disk key's release policy: released only to guests
                         with those measurements (or --release-policy)
  %-22s what confidant-hostd boots and the SHA-256 of every file,
                         key name, origin and version, release policy
                         digest, LUKS UUID, measurements, predicted PCR
                         events, tool version

--boot uefi (the default, the production path) also writes:

  %-22s the Unified Kernel Image (systemd's --uki-stub with the
                         kernel, the initramfs, --cmdline and an os-release),
                         signed for Secure Boot with --secure-boot-key
  %-22s a FAT EFI system partition with it as \EFI\BOOT\BOOTX64.EFI
  %-22s the UEFI variable store template: --ovmf-vars (blank) with
                         --secure-boot-cert enrolled as PK, KEK and db

The guest's OVMF verifies the UKI against that store and measures it into
the vTPM's PCRs 4, 7 and 11, which the build predicts from the UKI and the
store. The manifest's "kernel", "initrd" and "cmdline" are then empty (they
are inside the UKI; vmlinuz and initrd.img are written for review). With
--tee sim the launch measurement covers --ovmf-code alone. Firmware-only
PCRs 0-3 are not predicted. The signing key must be unencrypted (sbsign
cannot ask for a passphrase); make your own pair with

  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=my Secure Boot key/" \
    -keyout sb.key -out sb.pem

Debian's snakeoil pair (%s, passphrase snakeoil, and
%s) is for development and tests only: anyone can sign
with it.

--boot direct is the fast development mode: SeaBIOS boots the manifest's
"kernel", "initrd" and "cmdline", with no Secure Boot; the measurement covers
them. The kernel command line (--cmdline) is measured: confidant-hostd passes
the manifest's "cmdline" to QEMU verbatim, so the guest reports exactly the
measurement in the reference values (for the same --vcpus). With --tee sim
the measurement is the simulated TEE's (SeaBIOS, vCPU model %s);
otherwise it is the SEV-SNP launch digest over --ovmf, the OVMF AmdSev image
the host boots. TDX reference values are not computed yet.

The disk key opens the OS disk; the verifier releases it, under --key-name,
to guests its release policy admits. The generated policy admits exactly
this image's measurements: on SEV-SNP hardware with an affirming appraisal,
or with --tee sim on the simulated TEE (status affirming; with --boot direct
affirming or warning); debug off in all. --release-policy FILE replaces it (copied to the output).

With --admin-socket (the verifier's admin socket, <state-dir>/admin.sock)
the build registers the key itself, with the release policy, and records the
version the verifier answers with; the key name must be free there:

  --key-origin platform  (the default without --key-file) the verifier
                         makes the key and hands it out once; the disk is
                         encrypted with it and it is zeroed. It is written
                         nowhere unless --key-file names a new file for a
                         recovery copy (mode 0600).
  --key-origin customer  (the default with --key-file) --key-file's 32
                         bytes, or with --generate-key a new random key
                         written there (mode 0600), are imported.

Without --admin-socket the key is --key-file's (or generated with
--generate-key) and the build prints the command that imports it with the
release policy. The key file must lie outside --out, which goes to hosts
(untrusted).

The directory is assembled beside --out and renamed into place at the end; a
failed build leaves nothing under --out, removes a key file it wrote and
deletes the key it registered (if the verifier cannot be reached for that,
the error says so). --out must not exist or be empty.`

const buildExample = `  CGO_ENABLED=0 go build -o confidant-agent ./agent/cmd/confidant-agent
  scripts/mkrootfs.sh rootfs.img
  confidant-image build --name demo --image-version 1 \
    --rootfs rootfs.img --kernel /boot/vmlinuz-6.1.0-56-cloud-amd64 \
    --agent confidant-agent --tee sim \
    --verifier-url https://10.0.2.100:8443 --ca verifier-ca.pem \
    --key-name demo-os-disk --admin-socket /var/lib/confidant-verifier/admin.sock \
    --temp-disk /dev/vdb --vcpus 2 --out out/demo \
    --secure-boot-key sb.key --secure-boot-cert sb.pem
  confidant-hostd vm create -f demo.yaml   # image: {manifest: out/demo/manifest.json}

  # The fast development mode (SeaBIOS, no Secure Boot):
  confidant-image build ... --boot direct --out out/dev

  # A customer-managed key, imported by hand:
  confidant-image build ... --key-file demo.key --generate-key --out out/demo
  confidant-verifier admin key import demo-os-disk --key-file demo.key \
    --release-policy out/demo/release-policy.rego`

// buildLong is build's long help.
func buildLong() string {
	return fmt.Sprintf(buildLongFormat,
		build.KernelFile, build.InitrdFile, build.AgentConfigFile, build.OSDiskFile,
		build.ReferenceValuesFile, build.ReleasePolicyFile, build.ManifestFile,
		build.UKIFile, build.ESPFile, build.UEFIVarsFile, uki.SnakeoilKey, uki.SnakeoilCert, measure.SimVCPUType)
}

func newBuildCmd(env Env, g *globalFlags) *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:     "build --rootfs DIR|IMG --kernel VMLINUZ --agent BIN --out DIR --name N --image-version V --verifier-url URL --key-name K (--admin-socket SOCK | --key-file KEY) (--secure-boot-key KEY.pem --secure-boot-cert CERT.pem | --boot direct) [flags]",
		Short:   "Build a whole guest image: initramfs, encrypted OS disk, reference values, manifest",
		Long:    buildLong(),
		Example: buildExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBuild(cmd, f, env, g)
		},
	}
	f.register(cmd)
	return cmd
}

// register defines build's flags, topic by topic, and their constraints.
func (f *buildFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	f.registerImage(fl)
	f.registerAgentConfig(fl)
	f.registerMeasurement(fl)
	f.registerInitramfs(fl)
	f.registerKey(cmd)
	f.boot.register(fl)
	for _, name := range []string{"name", "image-version", "rootfs", "kernel", "agent", "out", "verifier-url", "key-name"} {
		_ = cmd.MarkFlagRequired(name) // the flags exist: error impossible
	}
	cmd.MarkFlagsMutuallyExclusive("firmware", "ovmf")
	cmd.MarkFlagsMutuallyExclusive("no-modules", "modules-dir")
	cmd.MarkFlagsMutuallyExclusive("no-modules", "module")
}

// registerImage defines the flags of the image's inputs, name and output.
func (f *buildFlags) registerImage(fl *pflag.FlagSet) {
	fl.StringVar(&f.name, "name", "", "image name, recorded in the manifest and reference values (required)")
	fl.StringVar(&f.version, "image-version", "", "image version, recorded in the manifest and reference values (required)")
	fl.StringVar(&f.rootfs, "rootfs", "", "root filesystem: a directory, or a raw ext4 image with 4096-byte blocks (required)")
	fl.StringVar(&f.rootfsSize, "rootfs-size", "", "size of the ext4 made from a --rootfs directory, e.g. 512M, 2G (default: its content with room to spare)")
	fl.StringVar(&f.kernel, "kernel", "", "guest kernel (required)")
	fl.StringVar(&f.agent, "agent", "", "static confidant-agent binary (required)")
	fl.StringVar(&f.out, "out", "", "output directory, created (required)")
}

// registerAgentConfig defines the flags of the generated agent
// configuration.
func (f *buildFlags) registerAgentConfig(fl *pflag.FlagSet) {
	fl.StringVar(&f.verifierURL, "verifier-url", "", "verifier URL as the guest reaches it, e.g. https://10.0.2.100:8443 (required)")
	fl.BoolVar(&f.allowHTTP, "allow-plain-http", false, "allow an http:// verifier URL (development only)")
	fl.StringVar(&f.ca, "ca", "", "PEM CA certificates of the verifier's TLS certificate (required for https)")
	fl.StringVar(&f.audience, "token-audience", "", "token audience the agent asks for (default: the verifier's)")
	fl.StringVar(&f.keyName, "key-name", "", "name of the verifier key that opens the OS disk (required)")
	fl.StringVar(&f.tee, "tee", build.TEEAuto, "agent evidence interface: auto, configfs-tsm, sev-guest, tdx-guest or sim")
	fl.StringVar(&f.tempDisk, "temp-disk", "", "temp disk device in the guest, e.g. /dev/vdb (default: none)")
	fl.StringVar(&f.swapSize, "swap-size", "", "swap file the agent makes on the temp disk, e.g. 512M (default: none)")
	fl.StringVar(&f.busybox, "busybox", build.BusyboxPath, "static busybox put in the initramfs with --temp-disk (the agent formats the temp disk with it)")
	fl.StringVar(&f.guestIP, "guest-ip", DefaultGuestIP, "guest address ADDRESS/PREFIXLEN (\"\": only lo)")
	fl.StringVar(&f.gateway, "gateway", "", "default gateway (default: none; the verifier is on the guest's subnet)")
	fl.StringVar(&f.onFailure, "on-failure", "poweroff", "what the agent does after a failure: poweroff or reboot")
}

// registerMeasurement defines the flags of the kernel command line and the
// launch measurements.
func (f *buildFlags) registerMeasurement(fl *pflag.FlagSet) {
	fl.StringVar(&f.cmdline, "cmdline", DefaultCmdline, "kernel command line, measured and passed by hostd verbatim")
	fl.IntSliceVar(&f.vcpus, "vcpus", []int{2}, "vCPU counts to compute measurements for (repeatable or comma-separated)")
	fl.StringVar(&f.vcpuType, "vcpu-type", "", "vCPU model of SEV-SNP measurements (default "+measure.DefaultVCPUType+")")
	fl.StringVar(&f.firmware, "firmware", "", "firmware measured with --tee sim (default "+measure.DefaultSimFirmware+")")
	fl.StringVar(&f.ovmf, "ovmf", "", "OVMF AmdSev image measured for SEV-SNP (required unless --tee sim)")
}

// registerInitramfs defines the flags of the initramfs's content.
func (f *buildFlags) registerInitramfs(fl *pflag.FlagSet) {
	fl.StringVar(&f.modulesDir, "modules-dir", "", "guest kernel modules /lib/modules/VERSION (default: from the kernel's file name vmlinuz-VERSION)")
	fl.StringArrayVar(&f.modules, "module", nil, "kernel module for the initramfs, with dependencies (repeatable; default: the built-in list)")
	fl.BoolVar(&f.noModules, "no-modules", false, "put no kernel modules in the initramfs")
	fl.StringArrayVar(&f.add, "add", nil, "extra initramfs file SRC:DST (repeatable)")
	fl.StringVar(&f.epoch, "source-date-epoch", "", "initramfs entry times (default: $SOURCE_DATE_EPOCH, else 0)")
}

// registerKey defines the flags of the disk key and its registration.
func (f *buildFlags) registerKey(cmd *cobra.Command) {
	fl := cmd.Flags()
	f.key.register(cmd)
	fl.Lookup("key-file").Usage = "disk key file, 32 raw bytes, mode 0600: the customer-managed key, or with --key-origin platform a new file for a recovery copy"
	fl.StringVar(&f.adminSocket, "admin-socket", "", "the verifier's admin socket: register the key there (default: print how to)")
	fl.StringVar(&f.keyOrigin, "key-origin", "", "platform (made by the verifier; needs --admin-socket) or customer (--key-file's) (default: platform with --admin-socket and no --key-file)")
	fl.StringVar(&f.releasePolicy, "release-policy", "", "the key's release policy (Rego) (default: generated for the image's measurements)")
}

func runBuild(cmd *cobra.Command, f buildFlags, env Env, g *globalFlags) error {
	spec, err := buildSpec(f, cmd.Flags().Changed, env)
	if err != nil {
		return err
	}
	if f.key.recoveryFile != "" {
		p, err := readPassphraseFile(f.key.recoveryFile)
		if err != nil {
			return err
		}
		defer clear(p)
		spec.RecoveryPassphrase = p
	}
	bar := newProgress(env.Stderr, "encrypting")
	spec.Progress = bar.update
	spec.Step = func(s string) { fmt.Fprintf(env.Stderr, "build: %s\n", termsafe.Escape(s)) }
	m, err := build.Build(cmd.Context(), spec, g.logger(env))
	bar.finish()
	if err != nil {
		return err
	}
	out := env.Stdout
	fmt.Fprintf(out, "built %s: %s %s\n", f.out, termsafe.Escape(m.Name), termsafe.Escape(m.Version))
	fmt.Fprintf(out, "  manifest   %s\n", filepath.Join(f.out, build.ManifestFile))
	fmt.Fprintf(out, "  cmdline    %s\n", termsafe.Escape(spec.Cmdline))
	printUEFI(out, f.out, m)
	fmt.Fprintf(out, "  luks uuid  %s\n", m.LUKSUUID)
	for _, mm := range m.Measurements {
		fmt.Fprintf(out, "  %s measurement (%d vCPUs): %s\n", mm.Kind, mm.VCPUs, mm.Measurement)
	}
	fmt.Fprintf(out, "reference values: %s (merge into the verifier's reference values file)\n",
		filepath.Join(f.out, build.ReferenceValuesFile))
	policy := filepath.Join(f.out, build.ReleasePolicyFile)
	fmt.Fprintf(out, "release policy: %s (sha256 %s)\n", policy, m.ReleasePolicySHA256)
	switch {
	case m.KeyVersion != 0 && m.KeyOrigin == build.KeyOriginPlatform:
		fmt.Fprintf(out, "disk key: made by the verifier as key %q version %d (platform-managed), with the release policy\n", m.KeyName, m.KeyVersion)
		if f.key.keyFile != "" {
			fmt.Fprintf(out, "  recovery copy: %s (keep it secret: it opens the OS disk; it is not in %s)\n", f.key.keyFile, f.out)
		} else {
			fmt.Fprintln(out, "  no copy was kept: only the verifier holds it")
		}
	case m.KeyVersion != 0:
		fmt.Fprintf(out, "disk key: %s imported into the verifier as key %q version %d (customer-managed), with the release policy\n", f.key.keyFile, m.KeyName, m.KeyVersion)
		fmt.Fprintf(out, "  keep %s secret: it opens the OS disk; it is not in %s\n", f.key.keyFile, f.out)
	default:
		fmt.Fprintf(out, "disk key: %s (keep it secret: it opens the OS disk; it is not in %s)\n", f.key.keyFile, f.out)
		fmt.Fprintf(out, "next: register the disk key with the verifier as key %q, with the release policy:\n", m.KeyName)
		fmt.Fprintf(out, "  confidant-verifier admin key import %s --key-file %s --release-policy %s\n",
			shellQuote(m.KeyName), shellQuote(f.key.keyFile), shellQuote(policy))
		fmt.Fprintln(out, "  (with --socket PATH or --state-dir DIR to reach the verifier's admin socket)")
	}
	return nil
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
