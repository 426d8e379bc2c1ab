package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// errMalformedMountinfo reports a line of /proc/self/mountinfo that does not
// have the documented shape (proc(5)).
var errMalformedMountinfo = errors.New("malformed mountinfo line")

// maxMountinfoLine bounds one mountinfo line; the kernel's lines are far
// shorter, and a longer one is refused rather than buffered without limit.
const maxMountinfoLine = 64 << 10

// mountEntry is one line of /proc/self/mountinfo:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
type mountEntry struct {
	ID, Parent   int
	Major, Minor uint32
	// Root is the directory of the filesystem that forms this mount's root.
	Root string
	// Point is the mount point relative to the process's root.
	Point string
	// Options are the per-mount options (rw/ro, nosuid, ...).
	Options []string
	// Optional are the optional fields (shared:N, master:N, ...).
	Optional []string
	FSType   string
	Source   string
	// SuperOptions are the per-superblock options.
	SuperOptions []string
}

// readOnly reports whether the mount or its superblock is read-only.
func (m mountEntry) readOnly() bool {
	for _, opts := range [][]string{m.Options, m.SuperOptions} {
		for _, o := range opts {
			if o == "ro" {
				return true
			}
		}
	}
	return false
}

// parseMountinfo parses the whole of a /proc/self/mountinfo file. Any
// malformed line is an error: the kernel's format is fixed, and a check
// that guessed around a bad line could report the wrong device.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMountinfoLine)
	var out []mountEntry
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		m, err := parseMountinfoLine(line)
		if err != nil {
			return nil, fmt.Errorf("parsing mountinfo line %d: %w", n, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	return out, nil
}

func parseMountinfoLine(line string) (mountEntry, error) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	// Six fixed fields, the separator, then fstype, source and super options.
	if sep < 0 || len(f) != sep+4 {
		return mountEntry{}, fmt.Errorf("%w: %d fields, separator at %d", errMalformedMountinfo, len(f), sep)
	}
	var m mountEntry
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return mountEntry{}, fmt.Errorf("%w: mount id %q", errMalformedMountinfo, f[0])
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil {
		return mountEntry{}, fmt.Errorf("%w: parent id %q", errMalformedMountinfo, f[1])
	}
	if m.Major, m.Minor, err = parseMajorMinor(f[2]); err != nil {
		return mountEntry{}, err
	}
	if m.Root, err = unescapeMountinfo(f[3]); err != nil {
		return mountEntry{}, err
	}
	if m.Point, err = unescapeMountinfo(f[4]); err != nil {
		return mountEntry{}, err
	}
	m.Options = strings.Split(f[5], ",")
	m.Optional = f[6:sep]
	m.FSType = f[sep+1]
	if m.Source, err = unescapeMountinfo(f[sep+2]); err != nil {
		return mountEntry{}, err
	}
	m.SuperOptions = strings.Split(f[sep+3], ",")
	return m, nil
}

// parseMajorMinor parses "MAJOR:MINOR" as the kernel prints device numbers.
func parseMajorMinor(s string) (uint32, uint32, error) {
	maj, min, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, 0, fmt.Errorf("%w: device number %q", errMalformedMountinfo, s)
	}
	a, err := strconv.ParseUint(maj, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: device major %q", errMalformedMountinfo, maj)
	}
	b, err := strconv.ParseUint(min, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: device minor %q", errMalformedMountinfo, min)
	}
	return uint32(a), uint32(b), nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011 tab, \012 newline, \134 backslash) in paths and sources.
func unescapeMountinfo(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("%w: truncated escape in %q", errMalformedMountinfo, s)
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("%w: bad escape in %q", errMalformedMountinfo, s)
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}

// findMount returns the mount on top at point: the last entry with that
// mount point, since a later mount over the same directory hides earlier ones.
func findMount(mounts []mountEntry, point string) (mountEntry, bool) {
	for i := len(mounts) - 1; i >= 0; i-- {
		if mounts[i].Point == point {
			return mounts[i], true
		}
	}
	return mountEntry{}, false
}
