package initramfs

import (
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Where a Confidant initramfs keeps what the agent reads. The agent's
// configuration defaults name the same paths.
const (
	// InitPath is the agent binary, run by the kernel as PID 1.
	InitPath = "/init"
	// ConfigPath is the agent's configuration file.
	ConfigPath = "/etc/confidant/agent.yaml"
	// CAPath is the PEM file of CA certificates the agent trusts for the
	// verifier's TLS certificate.
	CAPath = "/etc/confidant/verifier-ca.pem"
	// ModulesListPath lists the absolute paths of the kernel modules to load,
	// one per line, in load order.
	ModulesListPath = "/etc/confidant/modules"
	// ModulesRoot is where module files go: ModulesRoot/VERSION/kernel/....
	ModulesRoot = "/lib/modules"
)

// Errors returned by Assemble.
var (
	// ErrSpec: the Spec is incomplete or contradictory.
	ErrSpec = errors.New("initramfs: invalid spec")
	// ErrNotStatic: the agent binary is not a statically linked ELF
	// executable (the initramfs has no dynamic loader or libraries).
	ErrNotStatic = errors.New("initramfs: agent is not a static ELF executable")
	// ErrBadCA: the CA file holds no PEM certificate, an unparseable one,
	// or a PEM block of another type (a private key, say).
	ErrBadCA = errors.New("initramfs: CA file is not a list of PEM certificates")
)

// maxModuleSize bounds a decompressed kernel module.
const maxModuleSize = 256 << 20

// Extra is a file copied from the build machine into the initramfs.
type Extra struct {
	// Src is the file on the build machine; symlinks are followed.
	Src string
	// Dst is the absolute path in the initramfs. The file keeps Src's
	// permission bits.
	Dst string
}

// Spec says what goes into a Confidant initramfs. Paths are on the build
// machine.
type Spec struct {
	// Agent is the statically linked confidant-agent binary, installed as
	// InitPath. Required.
	Agent string
	// Config is the agent's YAML configuration, installed as ConfigPath.
	// Required. It is copied byte for byte; the agent validates it at boot.
	Config string
	// CA is a PEM file of CA certificates for the verifier's TLS, installed
	// as CAPath. Empty: none.
	CA string
	// ModulesDir is a kernel's /lib/modules/VERSION directory. Required when
	// Modules is not empty.
	ModulesDir string
	// Modules names the kernel modules the agent loads ("dm_crypt" or
	// "dm-crypt"); their dependencies are added. Built-in ones are skipped.
	Modules []string
	// Extra lists further files to add.
	Extra []Extra
	// Mtime is every entry's modification time (SOURCE_DATE_EPOCH; 0 when
	// unset).
	Mtime int64
}

// Result is an assembled initramfs.
type Result struct {
	// Archive holds every entry; write it with WriteGzip.
	Archive *Archive
	// Modules is the resolved module list (nil without modules). The files
	// are at ModulesRoot/VERSION/Path, with .gz and .zst compression
	// removed; .xz modules stay compressed for the kernel to decompress.
	Modules *ModuleSet
	// ModulePaths are the absolute paths written to ModulesListPath, in load
	// order.
	ModulePaths []string
}

// Build assembles spec and writes it to w as a gzip-compressed cpio archive.
func Build(spec Spec, w io.Writer) (*Result, error) {
	res, err := Assemble(spec)
	if err != nil {
		return nil, err
	}
	if err := res.Archive.WriteGzip(w); err != nil {
		return nil, fmt.Errorf("writing initramfs: %w", err)
	}
	return res, nil
}

// Assemble reads every input of spec and lays out the initramfs. Problems
// with the spec are reported all at once.
func Assemble(spec Spec) (*Result, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	a := &Archive{Mtime: spec.Mtime}
	var errs []error
	try := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	// The mount points the agent needs before it can create anything, and a
	// console node so the kernel can open fds 0-2 before devtmpfs exists.
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/etc", "/etc/confidant"} {
		try(a.AddDir(d, 0o755))
	}
	try(a.AddDir("/tmp", 0o777|fs.ModeSticky))
	try(a.AddCharDevice("/dev/console", 0o600, 5, 1))

	if agent, err := os.ReadFile(spec.Agent); err != nil {
		try(fmt.Errorf("reading agent: %w", err))
	} else if err := checkStatic(agent); err != nil {
		try(fmt.Errorf("checking agent %s: %w", spec.Agent, err))
	} else {
		try(a.AddFile(InitPath, agent, 0o755))
	}
	if cfg, err := os.ReadFile(spec.Config); err != nil {
		try(fmt.Errorf("reading agent config: %w", err))
	} else {
		try(a.AddFile(ConfigPath, cfg, 0o644))
	}
	if spec.CA != "" {
		if ca, err := os.ReadFile(spec.CA); err != nil {
			try(fmt.Errorf("reading verifier CA: %w", err))
		} else if err := checkCA(ca); err != nil {
			try(fmt.Errorf("checking verifier CA %s: %w", spec.CA, err))
		} else {
			try(a.AddFile(CAPath, ca, 0o644))
		}
	}

	res := &Result{Archive: a}
	if len(spec.Modules) > 0 {
		set, paths, err := addModules(a, spec.ModulesDir, spec.Modules)
		if err != nil {
			try(err)
		} else {
			res.Modules, res.ModulePaths = set, paths
		}
	}
	list := strings.Join(res.ModulePaths, "\n")
	if list != "" {
		list += "\n"
	}
	try(a.AddFile(ModulesListPath, []byte(list), 0o644))

	for _, x := range spec.Extra {
		data, err := os.ReadFile(x.Src)
		if err != nil {
			try(fmt.Errorf("reading extra file: %w", err))
			continue
		}
		fi, err := os.Stat(x.Src)
		if err != nil {
			try(fmt.Errorf("reading extra file: %w", err))
			continue
		}
		if err := a.AddFile(x.Dst, data, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			try(fmt.Errorf("adding extra file %s: %w", x.Src, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return res, nil
}

// checkSpec reports missing or contradictory fields.
func checkSpec(spec Spec) error {
	var errs []error
	if spec.Agent == "" {
		errs = append(errs, fmt.Errorf("%w: no agent binary", ErrSpec))
	}
	if spec.Config == "" {
		errs = append(errs, fmt.Errorf("%w: no agent config", ErrSpec))
	}
	if len(spec.Modules) > 0 && spec.ModulesDir == "" {
		errs = append(errs, fmt.Errorf("%w: modules requested without a modules directory", ErrSpec))
	}
	if spec.Mtime < 0 || spec.Mtime > 1<<32-1 {
		errs = append(errs, fmt.Errorf("%w: mtime %d outside 0..2^32-1", ErrSpec, spec.Mtime))
	}
	for _, x := range spec.Extra {
		if x.Src == "" || x.Dst == "" {
			errs = append(errs, fmt.Errorf("%w: extra file %q → %q: source and destination required", ErrSpec, x.Src, x.Dst))
		}
	}
	return errors.Join(errs...)
}

// addModules resolves names in modulesDir and adds the module files.
func addModules(a *Archive, modulesDir string, names []string) (*ModuleSet, []string, error) {
	set, err := ResolveModules(os.DirFS(modulesDir), names)
	if err != nil {
		return nil, nil, fmt.Errorf("resolving modules in %s: %w", modulesDir, err)
	}
	version := filepath.Base(filepath.Clean(modulesDir))
	var errs []error
	var paths []string
	for _, m := range set.Load {
		data, rel, err := readModule(modulesDir, m.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dst := path.Join(ModulesRoot, version, rel)
		if err := a.AddFile(dst, data, 0o644); err != nil {
			errs = append(errs, err)
			continue
		}
		paths = append(paths, dst)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return set, paths, nil
}

// readModule reads a module file, removing gzip or zstd compression (the
// kernel may lack in-kernel decompression). It returns the contents and the
// relative path to store them under.
func readModule(dir, rel string) ([]byte, string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, "", fmt.Errorf("reading module: %w", err)
	}
	var r io.Reader
	switch {
	case strings.HasSuffix(rel, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, "", fmt.Errorf("decompressing module %s: %w", rel, err)
		}
		r = zr
	case strings.HasSuffix(rel, ".ko.zst"):
		zr, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, "", fmt.Errorf("decompressing module %s: %w", rel, err)
		}
		defer zr.Close()
		r = zr
	default:
		return raw, rel, nil
	}
	data, err := io.ReadAll(io.LimitReader(r, maxModuleSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("decompressing module %s: %w", rel, err)
	}
	if len(data) > maxModuleSize {
		return nil, "", fmt.Errorf("decompressing module %s: larger than %d bytes", rel, maxModuleSize)
	}
	return data, rel[:strings.LastIndex(rel, ".ko")+3], nil
}

// checkStatic reports whether data is an ELF executable without a program
// interpreter.
func checkStatic(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotStatic, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%w: ELF type %s", ErrNotStatic, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: it needs a dynamic loader (build with CGO_ENABLED=0)", ErrNotStatic)
		}
	}
	return nil
}

// checkCA reports whether data holds one or more PEM certificates and no
// other PEM blocks. Text outside the blocks (comments) is allowed, as Go's
// x509.CertPool.AppendCertsFromPEM allows it.
func checkCA(data []byte) error {
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("%w: PEM block %q", ErrBadCA, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("%w: %w", ErrBadCA, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%w: no certificate", ErrBadCA)
	}
	return nil
}
