package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrStateDir means a spec path resolves into hostd's state directory,
// which holds hostd's own secrets (the simulated signer's keys, the swtpm
// state keys, other guests' vTPM state): a guest must never be handed one
// of them as its kernel, initrd, firmware or disk.
var ErrStateDir = errors.New("path resolves into hostd's state directory")

// CheckOutside returns an error matching ErrStateDir when path resolves,
// after symlinks, to stateDir or anything below it. A path that does not
// exist (yet) is judged by its deepest existing ancestor, so a symlinked
// directory on the way is still followed. stateDir must exist.
func CheckOutside(stateDir, path string) error {
	root, err := realDir(stateDir)
	if err != nil {
		return err
	}
	real, err := resolveExisting(path)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", path, err)
	}
	return outside(root, path, real)
}

// OpenOutside opens path with flag and checks that the file it opened is
// not in stateDir: it reads the opened file's own path back from
// /proc/self/fd, so a symlink swapped after validation cannot redirect it.
// The caller reads from or hands on exactly the checked file.
func OpenOutside(stateDir, path string, flag int) (*os.File, error) {
	root, err := realDir(stateDir)
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK: opening a FIFO must not wait for a writer; a FIFO (or a
	// character device, socket or directory) is then refused below.
	f, err := os.OpenFile(path, flag|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := regularOrBlock(f, path); err != nil {
		f.Close()
		return nil, err
	}
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err == nil && !filepath.IsAbs(real) {
		err = fmt.Errorf("opened file has no path (%q)", real)
	}
	if err == nil {
		err = outside(root, path, real)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// regularOrBlock refuses an opened file that is neither a regular file nor
// a block device, and puts the descriptor back into blocking mode.
func regularOrBlock(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if m := fi.Mode(); !m.IsRegular() && (m&fs.ModeDevice == 0 || m&fs.ModeCharDevice != 0) {
		return fmt.Errorf("%s is not a regular file or block device", path)
	}
	return syscall.SetNonblock(int(f.Fd()), false)
}

// realDir returns the absolute, symlink-free form of the state directory.
func realDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolving state directory: %w", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("resolving state directory: %w", err)
	}
	return real, nil
}

// resolveExisting evaluates symlinks in path like the kernel would, also
// when the file itself, or a directory on the way, does not exist: the
// longest existing prefix is resolved and the rest appended, and a dangling
// symlink is followed to where it points.
func resolveExisting(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return resolve(abs, 0)
}

const maxLinks = 40 // Linux's MAXSYMLINKS

func resolve(p string, depth int) (string, error) {
	if depth > maxLinks {
		return "", fmt.Errorf("too many levels of symbolic links at %s", p)
	}
	real, err := filepath.EvalSymlinks(p)
	if err == nil {
		return real, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	parent := filepath.Dir(p)
	if parent == p {
		return "", err
	}
	dir, err := resolve(parent, depth+1)
	if err != nil {
		return "", err
	}
	if fi, lerr := os.Lstat(p); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		// A dangling symlink: judge where it points.
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = dir + "/" + target
		}
		return resolve(target, depth+1)
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

func outside(root, path, real string) error {
	if real == root || strings.HasPrefix(real, strings.TrimSuffix(root, "/")+"/") {
		if real == path {
			return fmt.Errorf("%w %s, which holds hostd's own keys and guest state; refusing", ErrStateDir, root)
		}
		return fmt.Errorf("%w %s (it resolves to %s), which holds hostd's own keys and guest state; refusing", ErrStateDir, root, real)
	}
	return nil
}
