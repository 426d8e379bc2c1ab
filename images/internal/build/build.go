// Package build makes everything a Confidant guest image consists of, in one
// step, into one output directory:
//
//	vmlinuz                the kernel, copied
//	initrd.img             the initramfs: the agent as /init, its generated
//	                       configuration, the verifier CA, kernel modules
//	agent.yaml             that configuration, for review
//	os.img                 the root filesystem encrypted into LUKS2
//	reference-values.json  the launch measurements, in the verifier's
//	                       reference values format
//	manifest.json          what confidant-hostd boots (kernel, initrd,
//	                       cmdline, os_disk) and what the image is: digests
//	                       of every file, key name, LUKS UUID, measurements
//
// The directory is assembled under a temporary name beside the output and
// renamed into place at the end, so a failed build leaves nothing under the
// output's name. The disk key stays outside the directory, in the key file:
// the directory goes to hosts, which are not trusted.
package build

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/confidant-cvm/confidant/images/internal/encrypt"
	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/shared/initramfs"
	"github.com/confidant-cvm/confidant/shared/luks2"
)

// Names of the files in the output directory.
const (
	KernelFile          = "vmlinuz"
	InitrdFile          = "initrd.img"
	AgentConfigFile     = "agent.yaml"
	OSDiskFile          = "os.img"
	ReferenceValuesFile = "reference-values.json"
	ManifestFile        = "manifest.json"
)

// BusyboxPath is where the agent runs busybox from (agent/internal/disks
// DefaultMkfs).
const BusyboxPath = "/bin/busybox"

// Outcomes callers branch on.
var (
	// ErrSpec means the build spec is incomplete or contradictory.
	ErrSpec = errors.New("invalid build spec")
	// ErrOutputExists means the output directory exists and is not empty.
	ErrOutputExists = errors.New("output directory exists and is not empty")
)

// MaxVCPUs is the largest vCPU count confidant-hostd accepts.
const MaxVCPUs = 64

// maxCmdline is confidant-hostd's limit on the kernel command line.
const maxCmdline = 4096

// Spec describes one image build. Paths are on the build machine.
type Spec struct {
	// Name and Version identify the image in the manifest and in the
	// reference values. Name: 1-64 of [A-Za-z0-9._-]; Version: 1-64
	// printable ASCII characters.
	Name, Version string
	// RootFS is the root filesystem: a directory (made into ext4 with
	// mke2fs -t ext4 -b 4096 -d) or a raw ext4 image with 4096-byte blocks.
	RootFS string
	// RootFSSize is the size of the ext4 image made from a RootFS
	// directory; 0: the directory's size with room to spare.
	RootFSSize int64
	// Kernel is the guest kernel (bzImage). Required.
	Kernel string
	// Agent is the static confidant-agent binary. Required.
	Agent string
	// ModulesDir and Modules are the kernel modules of the initramfs
	// (initramfs.Spec); Modules nil with ModulesDir set: the default list.
	ModulesDir string
	Modules    []string
	// Extra lists further files for the initramfs.
	Extra []initramfs.Extra
	// Busybox, if not "", is a static busybox installed as BusyboxPath: the
	// agent formats the temp disk and makes swap with its mke2fs and
	// mkswap. Required with AgentConfig.TempDisk unless Extra installs
	// BusyboxPath.
	Busybox string
	// CA is the PEM file of the verifier's CA certificates; required when
	// the verifier URL is https.
	CA string
	// Agent is the generated agent configuration (the LUKS UUID is added).
	AgentConfig AgentConfig
	// Cmdline is the kernel command line, measured and passed by hostd
	// verbatim.
	Cmdline string
	// KeyFile holds the disk key (32 raw bytes, mode 0600). It must lie
	// outside Out.
	KeyFile string
	// GenerateKey creates KeyFile with a new random key; it must not exist.
	// A build that fails removes the key it generated.
	GenerateKey bool
	// RecoveryPassphrase, if not empty, goes into LUKS keyslot 1.
	RecoveryPassphrase []byte
	// RecoveryKDF protects keyslot 1; zero: luks2.Argon2idDefault().
	RecoveryKDF luks2.KDFSpec
	// UUID is the OS disk's LUKS UUID; "": random.
	UUID string
	// Label is the OS disk's LUKS label; "": none.
	Label string
	// VCPUs are the vCPU counts to compute measurements for (the digest
	// covers the count); one reference value each. At least one.
	VCPUs []int
	// VCPUType is the vCPU model of SEV-SNP measurements; "": EPYC-v4.
	// Simulated measurements always use measure.SimVCPUType.
	VCPUType string
	// Firmware is the firmware measured: for AgentConfig.TEE sim, the BIOS
	// hostd boots ("": measure.DefaultSimFirmware); otherwise the OVMF
	// AmdSev image the SEV-SNP host boots (required).
	Firmware string
	// Mtime dates every initramfs entry (SOURCE_DATE_EPOCH).
	Mtime int64
	// Out is the output directory; it must not exist or be empty.
	Out string
	// ToolVersion is recorded in the manifest.
	ToolVersion string
	// Step, if not nil, is told when each step starts; nil: it is logged.
	Step func(step string)
	// Progress, if not nil, receives the encryption progress.
	Progress func(done, total int64)
	// Rand is the source of keys, salts and the UUID; nil: crypto/rand.
	Rand io.Reader
}

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	versionRE = regexp.MustCompile(`^[!-~][ -~]{0,63}$`)
)

// Build makes the image described by spec. It logs to log, never a key.
func Build(ctx context.Context, spec Spec, log *slog.Logger) (*Manifest, error) {
	kind, err := spec.check()
	if err != nil {
		return nil, err
	}
	out := filepath.Clean(spec.Out)
	parent, base := filepath.Split(out)
	step := func(s string) {
		if spec.Step != nil {
			spec.Step(s)
		} else {
			log.Info(s)
		}
	}

	var diskKey []byte
	if !spec.GenerateKey {
		if diskKey, err = encrypt.ReadKeyFile(spec.KeyFile); err != nil {
			return nil, err
		}
		defer clear(diskKey)
	}
	uuid := strings.ToLower(spec.UUID)
	if uuid == "" {
		if uuid, err = luks2.NewUUID(spec.Rand); err != nil {
			return nil, fmt.Errorf("generating LUKS UUID: %w", err)
		}
	}
	if err := checkCmdlineUUID(spec.Cmdline, uuid); err != nil {
		return nil, err
	}

	stage, err := os.MkdirTemp(parent, "."+base+".build-*")
	if err != nil {
		return nil, fmt.Errorf("creating staging directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(stage)
		}
	}()
	at := func(name string) string { return filepath.Join(stage, name) }

	// The initramfs first: it is quick and catches a bad agent, CA or module.
	step("writing the agent configuration and the initramfs")
	agentYAML, err := spec.AgentConfig.YAML(uuid)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(at(AgentConfigFile), agentYAML, 0o644); err != nil {
		return nil, fmt.Errorf("writing agent configuration: %w", err)
	}
	extra := spec.Extra
	if spec.Busybox != "" {
		if err := checkStatic(spec.Busybox); err != nil {
			return nil, err
		}
		extra = append(slices.Clip(extra), initramfs.Extra{Src: spec.Busybox, Dst: BusyboxPath})
	}
	ird, err := initramfs.Assemble(initramfs.Spec{
		Agent: spec.Agent, Config: at(AgentConfigFile), CA: spec.CA,
		ModulesDir: spec.ModulesDir, Modules: spec.modules(), Extra: extra, Mtime: spec.Mtime,
	})
	if err != nil {
		return nil, fmt.Errorf("assembling initramfs: %w", err)
	}
	if err := writeFile(at(InitrdFile), ird.Archive.WriteGzip); err != nil {
		return nil, err
	}
	step("copying the kernel")
	if err := copyFile(at(KernelFile), spec.Kernel, measure.MaxKernel); err != nil {
		return nil, err
	}

	rootImg := spec.RootFS
	if st, err := os.Stat(spec.RootFS); err != nil {
		return nil, fmt.Errorf("inspecting root filesystem: %w", err)
	} else if !st.IsDir() && spec.RootFSSize != 0 {
		return nil, fmt.Errorf("%w: a root filesystem size is for a directory; %s is an image", ErrSpec, spec.RootFS)
	} else if st.IsDir() {
		step("making the ext4 root filesystem")
		rootImg = at(".rootfs.img")
		if err := makeExt4(ctx, spec.RootFS, rootImg, spec.RootFSSize, spec.Mtime); err != nil {
			return nil, err
		}
	}

	if spec.GenerateKey {
		if diskKey, err = encrypt.CreateKeyFile(spec.KeyFile, spec.Rand); err != nil {
			return nil, err
		}
		defer clear(diskKey)
		defer func() {
			if !ok {
				os.Remove(spec.KeyFile)
			}
		}()
		log.Info("generated a new disk key", "key_file", spec.KeyFile)
	}
	step("encrypting the OS disk")
	res, err := encrypt.Encrypt(ctx, encrypt.Spec{
		Input: rootImg, Output: at(OSDiskFile), DiskKey: diskKey,
		RecoveryPassphrase: spec.RecoveryPassphrase, RecoveryKDF: spec.RecoveryKDF,
		UUID: uuid, Label: spec.Label, Progress: spec.Progress, Rand: spec.Rand,
	}, log)
	if err != nil {
		return nil, err
	}
	clear(res.DiskKey)
	if rootImg != spec.RootFS {
		if err := os.Remove(rootImg); err != nil {
			return nil, fmt.Errorf("removing the plain root filesystem: %w", err)
		}
	}

	step("computing the launch measurements")
	m := &Manifest{
		Format: ManifestFormat, Name: spec.Name, Version: spec.Version, Tool: "confidant-image " + spec.ToolVersion,
		Kernel: KernelFile, Initrd: InitrdFile, Cmdline: spec.Cmdline, OSDisk: OSDiskFile,
		AgentConfig: AgentConfigFile, ReferenceValues: ReferenceValuesFile,
		TEE: spec.AgentConfig.tee(), KeyName: spec.AgentConfig.KeyName, LUKSUUID: res.UUID,
		VerifierURL: spec.AgentConfig.VerifierURL, SourceDateEpoch: spec.Mtime,
	}
	for _, n := range spec.VCPUs {
		mm, err := measure.Compute(measure.Inputs{
			Kind: kind, Firmware: spec.Firmware, Kernel: at(KernelFile), Initrd: at(InitrdFile),
			Cmdline: spec.Cmdline, VCPUs: n, VCPUType: spec.vcpuType(kind),
		})
		if err != nil {
			return nil, err
		}
		// Record the artifacts by their names in the output directory.
		mm.Kernel.Path, mm.Initrd.Path = KernelFile, InitrdFile
		m.Measurements = append(m.Measurements, *mm)
	}
	refs, err := referenceValues(m)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(at(ReferenceValuesFile), refs, 0o644); err != nil {
		return nil, fmt.Errorf("writing reference values: %w", err)
	}

	step("writing the manifest")
	m.Files = map[string]FileDigest{}
	for _, name := range []string{KernelFile, InitrdFile, AgentConfigFile, OSDiskFile, ReferenceValuesFile} {
		d, err := digestFile(at(name))
		if err != nil {
			return nil, err
		}
		m.Files[name] = d
	}
	if m.Agent, err = digestFile(spec.Agent); err != nil {
		return nil, err
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	if err := os.WriteFile(at(ManifestFile), append(mb, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("writing manifest: %w", err)
	}
	if err := syncTree(stage); err != nil {
		return nil, err
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, fmt.Errorf("setting output directory mode: %w", err)
	}
	// rename(2) replaces an empty directory and fails on a non-empty one,
	// so a directory filled meanwhile is never clobbered. (os.Rename
	// refuses any existing directory.)
	if err := syscall.Rename(stage, out); err != nil {
		return nil, fmt.Errorf("renaming output directory into place: %w", &os.LinkError{Op: "rename", Old: stage, New: out, Err: err})
	}
	ok = true
	if err := syncDir(parent); err != nil {
		return nil, err
	}
	log.Info("built image", "out", out, "luks_uuid", m.LUKSUUID, "measurements", len(m.Measurements))
	return m, nil
}

func (c AgentConfig) tee() string {
	if c.TEE == "" {
		return TEEAuto
	}
	return c.TEE
}

func (s *Spec) modules() []string {
	if s.ModulesDir != "" && len(s.Modules) == 0 {
		return initramfs.DefaultModules()
	}
	return s.Modules
}

func (s *Spec) vcpuType(kind measure.Kind) string {
	if kind == measure.KindSim {
		return measure.SimVCPUType
	}
	return s.VCPUType
}

// check validates the spec, reporting every problem, and returns the kind
// of measurement the image gets.
func (s *Spec) check() (measure.Kind, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrSpec}, args...)...))
	}
	if !nameRE.MatchString(s.Name) {
		bad("image name %q: want 1-64 of [A-Za-z0-9._-], starting alphanumeric", s.Name)
	}
	if !versionRE.MatchString(s.Version) {
		bad("image version %q: want 1-64 printable ASCII characters", s.Version)
	}
	for _, p := range []struct{ what, path string }{
		{"root filesystem", s.RootFS}, {"kernel", s.Kernel}, {"agent", s.Agent}, {"output directory", s.Out}, {"key file", s.KeyFile},
	} {
		if p.path == "" {
			bad("the %s is required", p.what)
		}
	}
	if s.RootFSSize < 0 || s.RootFSSize%(1<<20) != 0 {
		bad("root filesystem size %d: want whole MiB", s.RootFSSize)
	}
	if s.ModulesDir == "" && len(s.Modules) > 0 {
		bad("kernel modules need the modules directory")
	}
	errs = append(errs, s.AgentConfig.check(s.CA != "")...)
	hasBusybox := s.Busybox != ""
	for _, x := range s.Extra {
		if path.Clean(x.Dst) == BusyboxPath {
			if hasBusybox {
				bad("%s is added twice", BusyboxPath)
			}
			hasBusybox = true
		}
	}
	if s.AgentConfig.TempDisk != "" && !hasBusybox {
		bad("a temp disk needs a static busybox at %s in the initramfs (the agent formats it with busybox mke2fs)", BusyboxPath)
	}
	if len(s.Cmdline) > maxCmdline || !printable(s.Cmdline) {
		bad("kernel command line: want at most %d printable ASCII characters (confidant-hostd's limit)", maxCmdline)
	}
	if s.UUID != "" && !uuidRE.MatchString(strings.ToLower(s.UUID)) {
		bad("LUKS UUID %q: want the 8-4-4-4-12 hex form", s.UUID)
	}
	if len(s.VCPUs) == 0 {
		bad("at least one vCPU count is required (the measurement covers it)")
	}
	for i, n := range s.VCPUs {
		if n < 1 || n > MaxVCPUs {
			bad("%d vCPUs: want 1 to %d (confidant-hostd's range)", n, MaxVCPUs)
		} else if slices.Contains(s.VCPUs[:i], n) {
			bad("%d vCPUs given twice", n)
		}
	}
	var kind measure.Kind
	switch s.AgentConfig.tee() {
	case TEESim:
		kind = measure.KindSim
		if s.VCPUType != "" && s.VCPUType != measure.SimVCPUType {
			bad("vCPU type %q: simulated guests are always measured as %s", s.VCPUType, measure.SimVCPUType)
		}
	case TEETDXGuest:
		bad("tee tdx-guest: TDX reference values (MRTD, RTMRs) are not computed by this tool yet")
	default:
		kind = measure.KindSNP
		if s.Firmware == "" {
			bad("tee %s: the OVMF (AmdSev) image the host boots is required to compute the SEV-SNP reference value", s.AgentConfig.tee())
		}
	}
	s.checkPlaces(bad)
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return kind, nil
}

// checkPlaces checks the output directory and the key file.
func (s *Spec) checkPlaces(bad func(string, ...any)) {
	if s.Out == "" || s.KeyFile == "" {
		return
	}
	out, err := filepath.Abs(s.Out)
	if err != nil {
		bad("output directory: %v", err)
		return
	}
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		bad("%s: %v", out, ErrOutputExists)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		bad("output directory: %v", err)
	}
	if st, err := os.Stat(filepath.Dir(out)); err != nil || !st.IsDir() {
		bad("the parent of the output directory %s must exist", out)
	}
	key, err := filepath.Abs(s.KeyFile)
	if err != nil {
		bad("key file: %v", err)
		return
	}
	// Compare with symlinks resolved where the paths exist.
	if r, err := filepath.EvalSymlinks(filepath.Dir(key)); err == nil {
		key = filepath.Join(r, filepath.Base(key))
	}
	if r, err := filepath.EvalSymlinks(out); err == nil {
		out = r
	} else if r, err := filepath.EvalSymlinks(filepath.Dir(out)); err == nil {
		out = filepath.Join(r, filepath.Base(out))
	}
	if rel, err := filepath.Rel(out, key); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		bad("the key file %s is inside the output directory, which goes to untrusted hosts", s.KeyFile)
	}
	_, err = os.Lstat(s.KeyFile)
	switch {
	case s.GenerateKey && err == nil:
		bad("key file %s: %v (refusing to replace a key)", s.KeyFile, encrypt.ErrKeyFileExists)
	case !s.GenerateKey && errors.Is(err, os.ErrNotExist):
		bad("key file %s does not exist (ask for a new key to generate one)", s.KeyFile)
	}
}

// checkCmdlineUUID refuses a command line whose confidant.os_disk_uuid
// (which overrides the configuration) names another disk.
func checkCmdlineUUID(cmdline, uuid string) error {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "confidant.os_disk_uuid="); ok && strings.ToLower(strings.Trim(v, `"`)) != uuid {
			return fmt.Errorf("%w: the kernel command line sets confidant.os_disk_uuid=%s but the OS disk is %s", ErrSpec, v, uuid)
		}
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

// checkStatic refuses a file that is not a statically linked ELF
// executable: the initramfs has no dynamic loader or libraries.
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("%w: %s is not an ELF executable: %v", ErrSpec, file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is dynamically linked; the initramfs needs a static binary (busybox-static)", ErrSpec, file)
		}
	}
	return nil
}

// writeFile creates path and fills it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Base(path), err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// copyFile copies src (at most limit bytes) to a new file dst.
func copyFile(dst, src string, limit int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening %s: %w", src, err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil {
		return fmt.Errorf("inspecting %s: %w", src, err)
	} else if !st.Mode().IsRegular() || st.Size() == 0 || st.Size() > limit {
		return fmt.Errorf("%w: %s is not a non-empty regular file of at most %d bytes", ErrSpec, src, limit)
	}
	return writeFile(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// digestFile returns the SHA-256 and size of a file.
func digestFile(path string) (FileDigest, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileDigest{}, fmt.Errorf("hashing %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileDigest{}, fmt.Errorf("hashing %s: %w", filepath.Base(path), err)
	}
	return FileDigest{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// syncTree syncs every file in dir, then dir.
func syncTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("syncing output: %w", err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("syncing output: %w", err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("syncing %s: %w", e.Name(), err)
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory to sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
