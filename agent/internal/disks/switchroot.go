package disks

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultInit is the OS's init.
const DefaultInit = "/sbin/init"

// ErrNotMountPoint: the new root is not a mounted filesystem.
var ErrNotMountPoint = errors.New("new root is not a mount point")

// SwitchRoot hands the machine to the OS, as switch_root does from an
// initramfs (rootfs cannot be pivot_root'ed): it checks that newRoot is a
// mount point holding init, moves /dev, /proc, /sys (with securityfs and
// configfs under it) and /run into it, moves newRoot onto /, chroots there
// and executes init with argv and env. The initramfs files are left in
// memory. It returns only on failure; after the mounts have moved, a
// failure leaves the old root unusable and the caller should power off.
func SwitchRoot(newRoot, init string, argv, env []string) error {
	return switcher{sys: realSys{}}.switchRoot(newRoot, init, argv, env)
}

// rootSys are the system calls SwitchRoot makes.
type rootSys interface {
	Stat(path string, st *unix.Stat_t) error
	Lstat(path string, st *unix.Stat_t) error
	Mkdir(path string, mode uint32) error
	Mount(source, target, fstype string, flags uintptr, data string) error
	Chdir(path string) error
	Chroot(path string) error
	Exec(argv0 string, argv, env []string) error
}

type realSys struct{}

func (realSys) Stat(p string, st *unix.Stat_t) error  { return unix.Stat(p, st) }
func (realSys) Lstat(p string, st *unix.Stat_t) error { return unix.Lstat(p, st) }
func (realSys) Mkdir(p string, mode uint32) error     { return unix.Mkdir(p, mode) }
func (realSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}
func (realSys) Chdir(p string) error                        { return unix.Chdir(p) }
func (realSys) Chroot(p string) error                       { return unix.Chroot(p) }
func (realSys) Exec(argv0 string, argv, env []string) error { return unix.Exec(argv0, argv, env) }

type switcher struct {
	sys rootSys
}

func (s switcher) switchRoot(newRoot, init string, argv, env []string) error {
	if !filepath.IsAbs(newRoot) || filepath.Clean(newRoot) == "/" || !filepath.IsAbs(init) {
		return fmt.Errorf("switching root to %s with %s: absolute paths required, new root other than /", newRoot, init)
	}
	newRoot = filepath.Clean(newRoot)
	var rootSt, newSt, initSt unix.Stat_t
	if err := s.sys.Stat("/", &rootSt); err != nil {
		return fmt.Errorf("switching root: %w", err)
	}
	if err := s.sys.Stat(newRoot, &newSt); err != nil {
		return fmt.Errorf("switching root: %w", err)
	}
	if newSt.Dev == rootSt.Dev {
		return fmt.Errorf("switching root to %s: %w", newRoot, ErrNotMountPoint)
	}
	// Lstat: init is often an absolute symlink (to systemd) that only
	// resolves once the new root is the root.
	if err := s.sys.Lstat(filepath.Join(newRoot, init), &initSt); err != nil {
		return fmt.Errorf("switching root: no %s in the new root: %w", init, err)
	}
	if len(argv) == 0 {
		argv = []string{init}
	}
	// A missing /run is tolerated.
	for _, m := range [...]string{"/dev", "/proc", "/sys", "/run"} {
		target := filepath.Join(newRoot, m)
		if err := s.sys.Mkdir(target, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("switching root: creating %s: %w", target, err)
		}
		if err := s.sys.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
			if m == "/run" && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT)) {
				continue // nothing mounted on /run
			}
			return fmt.Errorf("switching root: moving %s to %s: %w", m, target, err)
		}
	}
	if err := s.sys.Chdir(newRoot); err != nil {
		return fmt.Errorf("switching root: %w", err)
	}
	if err := s.sys.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switching root: moving %s to /: %w", newRoot, err)
	}
	if err := s.sys.Chroot("."); err != nil {
		return fmt.Errorf("switching root: chroot: %w", err)
	}
	if err := s.sys.Chdir("/"); err != nil {
		return fmt.Errorf("switching root: %w", err)
	}
	if err := s.sys.Exec(init, argv, env); err != nil {
		return fmt.Errorf("switching root: executing %s: %w", init, err)
	}
	return nil
}
