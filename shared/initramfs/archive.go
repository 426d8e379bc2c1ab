package initramfs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Errors returned by Archive.
var (
	// ErrBadPath: an entry path is not absolute and clean, or is "/".
	ErrBadPath = errors.New("initramfs: invalid path")
	// ErrExists: an entry with that path was already added.
	ErrExists = errors.New("initramfs: entry already exists")
	// ErrNotDir: a parent of an entry is not a directory.
	ErrNotDir = errors.New("initramfs: parent is not a directory")
)

// entry is one node of the archive tree.
type entry struct {
	mode         uint32 // type and permission bits
	data         []byte // file contents or symlink target
	rdevMajor    uint32
	rdevMinor    uint32
	implicitDirs bool // created as a parent of another entry
}

// Archive is an in-memory file tree written as a cpio archive in a canonical
// order. Every entry is owned by root (0:0) and carries Mtime. Parent
// directories are created implicitly with mode 0755. The zero value is an
// empty archive with Mtime 0.
type Archive struct {
	// Mtime is the modification time of every entry, in seconds since the
	// Unix epoch (typically SOURCE_DATE_EPOCH); it must fit 32 bits.
	Mtime int64

	entries map[string]*entry // by path without the leading "/"
}

// AddDir adds a directory with the permission bits perm. Adding a directory
// that exists only as an implicit parent sets its permissions.
func (a *Archive) AddDir(name string, perm fs.FileMode) error {
	p, err := a.prepare(name)
	if err != nil {
		return err
	}
	if e, ok := a.entries[p]; ok {
		if e.mode&TypeMask == TypeDir && e.implicitDirs {
			e.mode = TypeDir | unixPerm(perm)
			e.implicitDirs = false
			return nil
		}
		return fmt.Errorf("adding directory %s: %w", name, ErrExists)
	}
	a.entries[p] = &entry{mode: TypeDir | unixPerm(perm)}
	return nil
}

// AddFile adds a regular file holding data with the permission bits perm.
// The archive keeps data; the caller must not modify it afterwards.
func (a *Archive) AddFile(name string, data []byte, perm fs.FileMode) error {
	return a.add(name, &entry{mode: TypeReg | unixPerm(perm), data: data})
}

// AddSymlink adds a symbolic link to target.
func (a *Archive) AddSymlink(name, target string) error {
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("adding symlink %s: empty or NUL in target: %w", name, ErrBadPath)
	}
	return a.add(name, &entry{mode: TypeSymlink | 0o777, data: []byte(target)})
}

// AddCharDevice adds a character device node with the given numbers, such
// as /dev/console (5, 1).
func (a *Archive) AddCharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	return a.add(name, &entry{mode: TypeChar | unixPerm(perm), rdevMajor: major, rdevMinor: minor})
}

// Paths returns the absolute paths of all entries, in archive order.
func (a *Archive) Paths() []string {
	names := a.sorted()
	for i, n := range names {
		names[i] = "/" + n
	}
	return names
}

// WriteCPIO writes the archive as an uncompressed newc cpio stream: entries
// sorted by path (so each parent precedes its children), inode numbers from
// 1 in that order, then the trailer.
func (a *Archive) WriteCPIO(w io.Writer) error {
	cw := NewWriter(w)
	for i, name := range a.sorted() {
		e := a.entries[name]
		nlink := uint32(1)
		if e.mode&TypeMask == TypeDir {
			nlink = 2
		}
		h := &Header{
			Name:      name,
			Mode:      e.mode,
			Mtime:     a.Mtime,
			Size:      int64(len(e.data)),
			Ino:       uint32(i + 1),
			Nlink:     nlink,
			RdevMajor: e.rdevMajor,
			RdevMinor: e.rdevMinor,
		}
		if err := cw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := cw.Write(e.data); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return cw.Close()
}

// WriteGzip writes the archive as a gzip-compressed newc cpio stream, the
// format the kernel unpacks as an initrd. The gzip header holds no name and
// no modification time, so equal archives give equal bytes.
func (a *Archive) WriteGzip(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return fmt.Errorf("creating gzip writer: %w", err)
	}
	// The zero Header already means: no name, no comment, ModTime 0, OS
	// unknown (255). Set it explicitly so a library default cannot leak in.
	zw.Header = gzip.Header{OS: 255}
	if err := a.WriteCPIO(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("finishing gzip stream: %w", err)
	}
	return nil
}

func (a *Archive) sorted() []string {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	// Plain byte order puts every directory before its children: a parent
	// path is a prefix of its children's paths.
	slices.Sort(names)
	return names
}

// add inserts a non-directory entry.
func (a *Archive) add(name string, e *entry) error {
	p, err := a.prepare(name)
	if err != nil {
		return err
	}
	if _, ok := a.entries[p]; ok {
		return fmt.Errorf("adding %s: %w", name, ErrExists)
	}
	a.entries[p] = e
	return nil
}

// prepare checks name and creates its missing parents; it returns the
// stored form of name (no leading slash).
func (a *Archive) prepare(name string) (string, error) {
	if a.Mtime < 0 || a.Mtime > 1<<32-1 {
		return "", fmt.Errorf("archive mtime %d: %w", a.Mtime, ErrFieldRange)
	}
	if !strings.HasPrefix(name, "/") || path.Clean(name) != name || name == "/" ||
		strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%q: %w", name, ErrBadPath)
	}
	if a.entries == nil {
		a.entries = make(map[string]*entry)
	}
	p := name[1:]
	// Check every parent before creating any, so a failed add changes nothing.
	var missing []string
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		e, ok := a.entries[dir]
		if !ok {
			missing = append(missing, dir)
			continue
		}
		if e.mode&TypeMask != TypeDir {
			return "", fmt.Errorf("adding %s: /%s: %w", name, dir, ErrNotDir)
		}
	}
	for _, dir := range missing {
		a.entries[dir] = &entry{mode: TypeDir | 0o755, implicitDirs: true}
	}
	return p, nil
}

// unixPerm converts Go permission and special bits to the Unix encoding.
func unixPerm(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}
