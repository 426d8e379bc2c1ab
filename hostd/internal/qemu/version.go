package qemu

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// ErrVersion means QEMU's version could not be read.
var ErrVersion = errors.New("unrecognised QEMU version")

// Version is a QEMU release number.
type Version struct{ Major, Minor, Micro int }

// String formats v as "X.Y.Z".
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// AtLeast reports whether v ≥ major.minor.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

var versionRE = regexp.MustCompile(`(?m)^QEMU emulator version ([0-9]{1,4})\.([0-9]{1,4})(?:\.([0-9]{1,6}))?`)

// ParseVersion reads the first line of `qemu-system-x86_64 --version`.
func ParseVersion(out []byte) (Version, error) {
	if len(out) > 64<<10 {
		out = out[:64<<10]
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("%w: %.60q", ErrVersion, out)
	}
	var v Version
	v.Major, _ = strconv.Atoi(string(m[1]))
	v.Minor, _ = strconv.Atoi(string(m[2]))
	if len(m[3]) > 0 {
		v.Micro, _ = strconv.Atoi(string(m[3]))
	}
	return v, nil
}

// BinaryVersion runs binary --version.
func BinaryVersion(ctx context.Context, binary string) (Version, error) {
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return Version{}, fmt.Errorf("running %s --version: %w", binary, err)
	}
	return ParseVersion(out)
}
