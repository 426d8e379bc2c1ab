package boot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// ModuleStatus is the outcome of loading one module.
type ModuleStatus int

// Module load outcomes.
const (
	// Loaded: finit_module succeeded.
	Loaded ModuleStatus = iota
	// AlreadyLoaded: the module was loaded before (EEXIST).
	AlreadyLoaded
	// NoDevice: the module refused to load because its hardware is absent
	// (ENODEV), like aesni-intel on a CPU without AES-NI. Not an error:
	// what needs the module fails later with its own message.
	NoDevice
)

// String names the status.
func (s ModuleStatus) String() string {
	switch s {
	case Loaded:
		return "loaded"
	case AlreadyLoaded:
		return "already loaded"
	case NoDevice:
		return "no device"
	}
	return fmt.Sprintf("ModuleStatus(%d)", int(s))
}

// ModuleResult is one module's outcome.
type ModuleResult struct {
	// Path is the module file.
	Path string
	// Name is the module name as /proc/modules shows it.
	Name string
	// Status is the outcome.
	Status ModuleStatus
}

// ErrModuleList: the module list file is malformed.
var ErrModuleList = errors.New("malformed module list")

// ReadModuleList reads a module list: one absolute module path per line, in
// load order; blank lines and lines starting with "#" are skipped.
func ReadModuleList(r io.Reader) ([]string, error) {
	var paths []string
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "/") || path.Clean(line) != line || !isModuleFile(line) {
			return nil, fmt.Errorf("%w: line %d: %q is not an absolute .ko path", ErrModuleList, n, line)
		}
		paths = append(paths, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading module list: %w", err)
	}
	return paths, nil
}

func isModuleFile(p string) bool {
	for _, s := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

// ModuleName returns the kernel's name for a module file: the base name
// without ".ko" and compression suffix, "-" replaced by "_".
func ModuleName(file string) string {
	n := path.Base(file)
	for _, s := range []string{".xz", ".zst", ".gz"} {
		n = strings.TrimSuffix(n, s)
	}
	return strings.ReplaceAll(strings.TrimSuffix(n, ".ko"), "-", "_")
}

// deferrableDirs are the kernel source directories whose modules only the
// disks need: device-mapper and the kernel's ciphers (which dm-crypt looks
// up by name; anything asking for one earlier gets the built-in generic
// code).
var deferrableDirs = []string{"/kernel/drivers/md/", "/kernel/crypto/", "/kernel/arch/"}

// deferrable reports whether the module file at p is device-mapper's or a
// cipher's (arch/<arch>/crypto).
func deferrable(p string) bool {
	for _, d := range deferrableDirs {
		i := strings.Index(p, d)
		if i < 0 {
			continue
		}
		if d != "/kernel/arch/" {
			return true
		}
		// arch/<arch>/crypto/ only.
		rest := p[i+len(d):]
		if j := strings.IndexByte(rest, '/'); j > 0 && strings.HasPrefix(rest[j:], "/crypto/") {
			return true
		}
	}
	return false
}

// SplitDeferred splits a module list (in load order) into the modules to
// load now and those that may load later, in the background, as long as
// they are loaded before the disks are opened: the longest tail of the
// list made only of device-mapper and cipher modules. Only a tail is
// deferred, so no module loaded now can depend on one loaded later (the
// list puts every module after its dependencies).
func SplitDeferred(paths []string) (now, later []string) {
	i := len(paths)
	for i > 0 && deferrable(paths[i-1]) {
		i--
	}
	return paths[:i], paths[i:]
}

// FinitFunc is the finit_module system call.
type FinitFunc func(fd int, params string, flags int) error

// ModuleLoader loads kernel modules from files.
type ModuleLoader struct {
	finit FinitFunc
}

// NewModuleLoader returns a loader using the finit_module system call.
func NewModuleLoader() *ModuleLoader { return &ModuleLoader{finit: unix.FinitModule} }

// NewModuleLoaderWith returns a loader that calls finit instead of the
// system call (for tests; the real call would load into the test host).
func NewModuleLoaderWith(finit FinitFunc) *ModuleLoader { return &ModuleLoader{finit: finit} }

// ErrKernelDecompress: the kernel cannot decompress a compressed module.
var ErrKernelDecompress = errors.New("kernel cannot load compressed modules (no CONFIG_MODULE_DECOMPRESS); build the initramfs with uncompressed modules")

// Load loads the modules in order and stops at the first failure. Compressed
// files (.ko.xz/.zst/.gz) are passed with MODULE_INIT_COMPRESSED_FILE for the
// kernel to decompress.
func (l *ModuleLoader) Load(paths []string) ([]ModuleResult, error) {
	var res []ModuleResult
	for _, p := range paths {
		st, err := l.load(p)
		if err != nil {
			return res, fmt.Errorf("loading module %s: %w", p, err)
		}
		res = append(res, ModuleResult{Path: p, Name: ModuleName(p), Status: st})
	}
	return res, nil
}

func (l *ModuleLoader) load(p string) (ModuleStatus, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	flags := 0
	compressed := !strings.HasSuffix(p, ".ko")
	if compressed {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	switch err := l.finit(int(f.Fd()), "", flags); {
	case err == nil:
		return Loaded, nil
	case errors.Is(err, unix.EEXIST):
		return AlreadyLoaded, nil
	case errors.Is(err, unix.ENODEV):
		return NoDevice, nil
	case compressed && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
		return 0, fmt.Errorf("%w: %w", ErrKernelDecompress, err)
	default:
		return 0, err
	}
}

// ErrModuleNotLive: a module that loaded is not live in /proc/modules.
var ErrModuleNotLive = errors.New("not live in /proc/modules")

// CheckLive reads /proc/modules and reports every named module that is not
// listed there as Live.
func CheckLive(procModules io.Reader, names []string) error {
	live := map[string]bool{}
	sc := bufio.NewScanner(procModules)
	for sc.Scan() {
		// name size refcount deps state address
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && f[4] == "Live" {
			live[f[0]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading /proc/modules: %w", err)
	}
	var errs []error
	for _, n := range names {
		if !live[n] {
			errs = append(errs, fmt.Errorf("module %s: %w", n, ErrModuleNotLive))
		}
	}
	return errors.Join(errs...)
}
