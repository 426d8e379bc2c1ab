// Package disks opens the guest's disks with the released key and hands the
// machine over to the OS.
//
//   - The OS disk is a LUKS2 volume made by the image tool: keyslot 0's
//     passphrase is the released key itself. It is found by its LUKS UUID,
//     unlocked with github.com/anatol/luks.go into a dm-crypt mapping, and
//     its ext4 filesystem is mounted read-write as the new root.
//   - The temp disk is a LUKS2 volume made here, in the guest: its keyslot 0
//     passphrase is HKDF-SHA256(released key, salt = its LUKS UUID, info =
//     "confidant temp disk v1"). A blank disk (first boot, or a fresh one
//     after the host redeployed the guest) is formatted with a new UUID and
//     a new filesystem; a disk whose header the derived key opens is reused;
//     a header the key does not open is refused unless resetting is allowed.
//     Swap may live in a file on it.
//   - SwitchRoot moves /dev, /proc, /sys and /run into the new root, makes
//     it the root and executes its init.
//
// There is no udev in the initramfs: block devices are found in
// /sys/class/block, and the /dev/mapper/NAME node of a mapping is made here
// from /sys/block/dm-*/dm/name and its dev number. Paths under /sys and /dev
// are parameters so tests can use a prepared tree.
//
// Key material held here (derived keys, buffers) is zeroed after use.
// luks.go keeps its copy of a volume key unexported; it lives until the
// agent executes the OS's init, which replaces the whole address space.
package disks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/confidant-cvm/confidant/shared/luks2"
)

// Outcomes callers branch on.
var (
	// ErrNotFound: no block device matches.
	ErrNotFound = errors.New("disk not found")
	// ErrAmbiguous: more than one block device matches; the host may be
	// trying to substitute one, so none is chosen.
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

// Block is a block device seen in /sys/class/block.
type Block struct {
	// Name is the kernel name ("vda", "vda1", "dm-0").
	Name string
	// Path is the device node (DEVDIR/NAME).
	Path string
	// Dev is "MAJOR:MINOR".
	Dev string
	// Size is the size in bytes.
	Size int64
	// LUKS2 is true when a LUKS2 header (either copy) verifies.
	LUKS2 bool
	// UUID is the LUKS2 UUID, lower case; "" without LUKS2.
	UUID string
	// Corrupt is true when a LUKS2 magic is present but no copy verifies.
	Corrupt bool
}

// Scan lists the block devices of sysDir/class/block with a non-zero size,
// sorted by name, and reads each one's LUKS2 header (luks2.IsLUKS2: the
// header's checksum must verify, so a random or torn header is not taken
// for a disk). A device node that cannot be opened is listed without LUKS2.
func Scan(sysDir, devDir string) ([]Block, error) {
	classDir := filepath.Join(sysDir, "class/block")
	ents, err := os.ReadDir(classDir)
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var out []Block
	for _, e := range ents {
		name := e.Name()
		sysPath := filepath.Join(classDir, name)
		sectors, err := readInt(filepath.Join(sysPath, "size"))
		if err != nil || sectors <= 0 {
			continue
		}
		b := Block{Name: name, Path: filepath.Join(devDir, name), Size: sectors * 512}
		b.Dev, _ = readTrim(filepath.Join(sysPath, "dev"))
		b.LUKS2, b.UUID, b.Corrupt = probeLUKS2(b.Path)
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Block) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func probeLUKS2(path string) (ok bool, uuid string, corrupt bool) {
	f, err := os.Open(path)
	if err != nil {
		return false, "", false
	}
	defer f.Close()
	ok, uuid, err = luks2.IsLUKS2(f)
	if err != nil {
		return false, "", errors.Is(err, luks2.ErrCorruptHeader)
	}
	return ok, strings.ToLower(uuid), false
}

// FindLUKS returns the one block device whose LUKS2 UUID is uuid (compared
// case-insensitively). None fails with ErrNotFound, several with
// ErrAmbiguous.
func FindLUKS(blocks []Block, uuid string) (Block, error) {
	uuid = strings.ToLower(uuid)
	var match []Block
	for _, b := range blocks {
		if b.LUKS2 && b.UUID == uuid {
			match = append(match, b)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return Block{}, fmt.Errorf("no block device with LUKS2 UUID %s (seen: %s): %w", uuid, describe(blocks), ErrNotFound)
	}
	names := make([]string, len(match))
	for i, m := range match {
		names[i] = m.Name
	}
	return Block{}, fmt.Errorf("LUKS2 UUID %s on %s: %w", uuid, strings.Join(names, ", "), ErrAmbiguous)
}

// FindName returns the block device whose node is path ("/dev/vdb") or
// whose kernel name is path's base name.
func FindName(blocks []Block, path string) (Block, error) {
	name := filepath.Base(path)
	for _, b := range blocks {
		if b.Path == path || b.Name == name {
			return b, nil
		}
	}
	return Block{}, fmt.Errorf("block device %s (seen: %s): %w", path, describe(blocks), ErrNotFound)
}

func describe(blocks []Block) string {
	if len(blocks) == 0 {
		return "none"
	}
	parts := make([]string, len(blocks))
	for i, b := range blocks {
		switch {
		case b.LUKS2:
			parts[i] = b.Name + " LUKS2 " + b.UUID
		case b.Corrupt:
			parts[i] = b.Name + " corrupt LUKS2"
		default:
			parts[i] = b.Name
		}
	}
	return strings.Join(parts, ", ")
}

func readTrim(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readInt(p string) (int64, error) {
	s, err := readTrim(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
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
