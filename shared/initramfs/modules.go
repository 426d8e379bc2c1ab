package initramfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Errors returned by ResolveModules and ParseModulesDep.
var (
	// ErrUnknownModule: a requested module is neither in modules.dep nor
	// built into the kernel.
	ErrUnknownModule = errors.New("initramfs: unknown kernel module")
	// ErrModulesDep: modules.dep is malformed or inconsistent.
	ErrModulesDep = errors.New("initramfs: malformed modules.dep")
)

// maxModulesDep bounds the size of a modules.dep we read (a distribution
// kernel's is a few hundred KiB).
const maxModulesDep = 32 << 20

// Module is one loadable kernel module.
type Module struct {
	// Name is the module's canonical name: the file name without ".ko" and
	// compression suffix, "-" replaced by "_" (as /proc/modules shows it).
	Name string
	// Path is the module file relative to the modules directory, as listed in
	// modules.dep ("kernel/drivers/md/dm-crypt.ko", possibly ending in
	// ".ko.xz", ".ko.zst" or ".ko.gz").
	Path string
}

// ModuleSet is the result of resolving module names.
type ModuleSet struct {
	// Load lists the modules to load, in order: every module comes after all
	// the modules it depends on. Each appears once.
	Load []Module
	// Builtin lists the canonical names of requested modules that are built
	// into the kernel (listed in modules.builtin): nothing to load.
	Builtin []string
}

// DefaultModules returns the modules a Confidant guest needs on a Debian cloud
// kernel: virtio PCI transport, block, network and console, configfs (for
// configfs-tsm), device mapper with dm-crypt, and the AES-XTS implementations
// dm-crypt asks the crypto API for (the guest has no modprobe to load them on
// demand). Their dependencies are resolved by ResolveModules.
func DefaultModules() []string {
	return []string{
		"virtio_pci", "virtio_blk", "virtio_net", "virtio_console",
		"configfs",
		"dm_mod", "dm_crypt",
		"xts", "ecb", "aesni_intel",
	}
}

// CanonicalModuleName returns the name the kernel uses for a module given by
// name or file name: directory and ".ko[.xz|.zst|.gz]" removed, "-" → "_".
func CanonicalModuleName(name string) string {
	name = path.Base(name)
	for _, suffix := range []string{".xz", ".zst", ".gz"} {
		name = strings.TrimSuffix(name, suffix)
	}
	name = strings.TrimSuffix(name, ".ko")
	return strings.ReplaceAll(name, "-", "_")
}

// ModulesDep is a parsed modules.dep: each module's file and direct
// dependencies, by canonical name.
type ModulesDep struct {
	path map[string]string   // canonical name → relative path
	deps map[string][]string // canonical name → canonical names of its dependencies, as listed
}

// ParseModulesDep parses modules.dep ("path: dep dep ..." per line). Every
// dependency must itself have a line.
func ParseModulesDep(r io.Reader) (*ModulesDep, error) {
	md := &ModulesDep{path: map[string]string{}, deps: map[string][]string{}}
	sc := bufio.NewScanner(io.LimitReader(r, maxModulesDep))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var depPaths [][]string
	var names []string
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		file, rest, ok := strings.Cut(text, ":")
		if !ok || !isModulePath(file) {
			return nil, fmt.Errorf("%w: line %d: want \"path.ko: deps\"", ErrModulesDep, line)
		}
		name := CanonicalModuleName(file)
		if _, dup := md.path[name]; dup {
			return nil, fmt.Errorf("%w: line %d: module %s listed twice", ErrModulesDep, line, name)
		}
		md.path[name] = file
		deps := strings.Fields(rest)
		for _, d := range deps {
			if !isModulePath(d) {
				return nil, fmt.Errorf("%w: line %d: dependency %q is not a module path", ErrModulesDep, line, d)
			}
		}
		names = append(names, name)
		depPaths = append(depPaths, deps)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	for i, name := range names {
		for _, d := range depPaths[i] {
			dn := CanonicalModuleName(d)
			if md.path[dn] != d {
				return nil, fmt.Errorf("%w: %s depends on %s, which has no line of its own", ErrModulesDep, name, d)
			}
			md.deps[name] = append(md.deps[name], dn)
		}
	}
	return md, nil
}

// isModulePath reports whether p looks like a relative module file path.
func isModulePath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.HasPrefix(p, "../") {
		return false
	}
	for _, s := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, s) && len(p) > len(s) {
			return true
		}
	}
	return false
}

// Resolve returns the modules to load for names, dependencies first, and the
// requested names found in builtin instead. Unknown names are reported all
// at once, each matching ErrUnknownModule.
func (md *ModulesDep) Resolve(names []string, builtin map[string]bool) (*ModuleSet, error) {
	set := &ModuleSet{}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var errs []error
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("%w: dependency cycle %s", ErrModulesDep, strings.Join(slices.Concat(chain, []string{name}), " → "))
		}
		state[name] = visiting
		// modules.dep lists the deepest dependencies last; modprobe loads
		// them in reverse. Recursing keeps the order right even when a line
		// is not fully sorted.
		deps := md.deps[name]
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], slices.Concat(chain, []string{name})); err != nil {
				return err
			}
		}
		state[name] = done
		set.Load = append(set.Load, Module{Name: name, Path: md.path[name]})
		return nil
	}
	for _, raw := range names {
		name := CanonicalModuleName(raw)
		if !validModuleName(raw) {
			errs = append(errs, fmt.Errorf("%w: %q", ErrUnknownModule, raw))
			continue
		}
		if _, ok := md.path[name]; ok {
			if err := visit(name, nil); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if builtin[name] {
			if !slices.Contains(set.Builtin, name) {
				set.Builtin = append(set.Builtin, name)
			}
			continue
		}
		errs = append(errs, fmt.Errorf("%w: %s (not in modules.dep or modules.builtin)", ErrUnknownModule, raw))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// validModuleName reports whether a requested name is a bare module name.
func validModuleName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ParseModulesBuiltin parses modules.builtin (one module path per line) into
// a set of canonical names.
func ParseModulesBuiltin(r io.Reader) (map[string]bool, error) {
	set := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(r, maxModulesDep))
	for sc.Scan() {
		if text := strings.TrimSpace(sc.Text()); text != "" && !strings.HasPrefix(text, "#") {
			set[CanonicalModuleName(text)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.builtin: %w", err)
	}
	return set, nil
}

// ResolveModules resolves module names against a kernel's modules directory
// (the contents of /lib/modules/VERSION, as an fs.FS): modules.dep gives the
// files and their dependencies, modules.builtin the modules that need no
// loading. A missing modules.builtin means none are built in.
func ResolveModules(modulesDir fs.FS, names []string) (*ModuleSet, error) {
	f, err := modulesDir.Open("modules.dep")
	if err != nil {
		return nil, fmt.Errorf("opening modules.dep: %w", err)
	}
	md, err := ParseModulesDep(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if f, err := modulesDir.Open("modules.builtin"); err == nil {
		builtin, err = ParseModulesBuiltin(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("opening modules.builtin: %w", err)
	}
	return md.Resolve(names, builtin)
}
