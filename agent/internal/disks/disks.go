// Package disks opens the guest's disks with the released key and hands the
// machine over to the OS.
//
//   - The OS disk is a LUKS2 volume made by the image tool: keyslot 0's
//     passphrase is the released key itself. It is found by its LUKS UUID,
//     its keyslot 0 is unlocked with shared/luks2, the volume is mapped with
//     dm-crypt (github.com/anatol/devmapper.go), and its ext4 filesystem is
//     mounted read-write as the new root.
//   - The temp disk is a LUKS2 volume made here, in the guest: its keyslot 0
//     passphrase is HKDF-SHA256(released key, salt = its LUKS UUID, info =
//     "confidant temp disk v1"). A blank disk (first boot, or a fresh one
//     after the host redeployed the guest) is formatted with a new UUID and
//     a new filesystem (the first MiB holds its header); a disk whose
//     keyslot 0 the derived key opens is reused;
//     a header the key does not open is refused unless resetting is allowed.
//     Swap may live in a file on it.
//   - SwitchRoot moves /dev, /proc, /sys and /run into the new root, makes
//     it the root and executes its init.
//
// There is no udev in the initramfs: the disks themselves are found by the
// boot flow's devices stage (agent/internal/boot, /sys/class/block), which
// hands their nodes to OpenOS and SetupTemp; the /dev/mapper/NAME node of a
// mapping is made here from /sys/block/dm-*/dm/name and its dev number.
// Paths under /sys and /dev are parameters so tests can use a prepared tree.
//
// Key material held here (derived keys, volume keys, buffers) is zeroed
// after use. The hex copy of a volume key that devmapper.go builds for the
// table load is a Go string it does not zero; it lives until the agent
// executes the OS's init, which replaces the whole address space.
package disks

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Outcomes callers branch on.
var (
	// ErrAmbiguous: more than one device-mapper device has the name; the
	// host may be trying to substitute one, so none is chosen.
	ErrAmbiguous = errors.New("more than one disk matches")
	// ErrWrongKey: the released key does not open the OS disk's keyslot 0.
	ErrWrongKey = errors.New("the released key does not open the disk")
	// ErrForeign: the temp disk holds a LUKS2 volume that the key derived
	// for it does not open (another guest's disk, or a planted one).
	ErrForeign = errors.New("temp disk holds a LUKS2 volume the released key does not open")
	// ErrCorrupt: the temp disk has a LUKS2 magic but no header copy that
	// verifies.
	ErrCorrupt = errors.New("temp disk has a corrupt LUKS2 header")
	// ErrTooSmall: the temp disk cannot hold a LUKS2 header and a filesystem.
	ErrTooSmall = errors.New("temp disk too small")
	// ErrUnexpected: the disk's LUKS2 metadata is not what Confidant writes
	// (UUID, cipher, sector size).
	ErrUnexpected = errors.New("unexpected LUKS2 volume")
	// ErrNoMapping: the device-mapper device did not appear in sysfs.
	ErrNoMapping = errors.New("device-mapper device not found")
)

func readTrim(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// parseDev parses "MAJOR:MINOR".
func parseDev(s string) (major, minor uint32, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, 0, fmt.Errorf("device number %q: want MAJOR:MINOR", s)
	}
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("device number %q: want MAJOR:MINOR", s)
	}
	return uint32(ma), uint32(mi), nil
}
