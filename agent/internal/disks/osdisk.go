package disks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/shared/luks2"
)

// Defaults.
const (
	// DefaultOSName is the OS disk's mapping name (/dev/mapper/confidant-root).
	DefaultOSName = "confidant-root"
	// DefaultTempName is the temp disk's mapping name.
	DefaultTempName = "confidant-temp"
	// DefaultSysDir and DefaultDevDir are where sysfs and devtmpfs live.
	DefaultSysDir = "/sys"
	DefaultDevDir = "/dev"
)

// OSDisk says which disk is the OS disk and where its filesystem goes.
// Zero values are documented per field.
type OSDisk struct {
	// Device is the disk's node ("/dev/vda"), found by its LUKS2 UUID.
	// Required.
	Device string
	// UUID is the LUKS2 UUID the configuration names; the header is checked
	// against it again right before unlocking. Required.
	UUID string
	// Name is the mapping name; "": DefaultOSName.
	Name string
	// Mount is where the root filesystem is mounted (the configuration's
	// os_disk.mount). Required.
	Mount string
	// SysDir and DevDir are where sysfs and devtmpfs live; "": DefaultSysDir,
	// DefaultDevDir.
	SysDir, DevDir string
}

// OpenOS unlocks the OS disk with the released key (keyslot 0), maps it
// with dm-crypt, makes /dev/mapper/NAME and mounts its ext4 filesystem
// read-write at d.Mount. It returns the mapper node. The caller keeps and
// zeroes key.
func OpenOS(ctx context.Context, d OSDisk, key []byte) (string, error) {
	if d.Device == "" || d.UUID == "" || d.Mount == "" {
		return "", errors.New("opening OS disk: device, UUID and mount point are required")
	}
	name, sysDir, devDir := orDefault(d.Name, DefaultOSName), orDefault(d.SysDir, DefaultSysDir), orDefault(d.DevDir, DefaultDevDir)
	v, err := UnsealOS(d.Device, d.UUID, key)
	if err != nil {
		return "", err
	}
	defer v.Wipe()
	if err := v.SetupMapper(name); err != nil {
		return "", fmt.Errorf("mapping OS disk %s as %s: %w", d.Device, name, err)
	}
	node, err := MapperNode(ctx, sysDir, devDir, name)
	if err != nil {
		unmap(name)
		return "", fmt.Errorf("OS disk mapping: %w", err)
	}
	if err := mountFS(node, d.Mount, []string{"ext4"}, 0); err != nil {
		unmap(name)
		return "", fmt.Errorf("OS disk: %w", err)
	}
	return node, nil
}

// UnsealOS recovers the volume of the LUKS2 OS disk on device from keyslot
// 0 with key (shared/luks2: checksums, metadata, KDF, anti-forensic merge,
// volume key digest; no other keyslot is tried) and checks it is the volume
// uuid in Confidant's layout, without touching device-mapper. A key that
// does not open keyslot 0 fails with ErrWrongKey; a header whose copies do
// not verify with luks2.ErrCorruptHeader; any other volume (no LUKS2 header,
// another UUID, cipher or sector size, no keyslot 0) with ErrUnexpected.
// The caller wipes the returned volume.
func UnsealOS(device, uuid string, key []byte) (*Volume, error) {
	f, err := os.Open(device)
	if err != nil {
		return nil, fmt.Errorf("opening OS disk: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("sizing OS disk %s: %w", device, err)
	}
	_, hdr, err := luks2.OpenKeyslot(f, key, 0)
	switch {
	case errors.Is(err, luks2.ErrNotLUKS2):
		return nil, fmt.Errorf("OS disk %s: %w: no LUKS2 header", device, ErrUnexpected)
	case errors.Is(err, luks2.ErrWrongPassphrase):
		return nil, fmt.Errorf("unlocking OS disk %s: keyslot 0: %w", device, ErrWrongKey)
	case errors.Is(err, luks2.ErrUnsupported):
		return nil, fmt.Errorf("unlocking OS disk %s: %w: %w", device, ErrUnexpected, err)
	case err != nil:
		return nil, fmt.Errorf("unlocking OS disk %s: %w", device, err)
	}
	v := newVolume(device, size, hdr)
	if err := checkVolume(v, uuid, size); err != nil {
		v.Wipe()
		return nil, fmt.Errorf("OS disk %s: %w", device, err)
	}
	return v, nil
}

// mountFS mounts the filesystem on node at target (created if missing),
// trying each type in order.
func mountFS(node, target string, types []string, flags uintptr) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("creating mount point %s: %w", target, err)
	}
	var errs []error
	for _, t := range types {
		err := unix.Mount(node, target, t, flags, "")
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("as %s: %w", t, err))
	}
	return fmt.Errorf("mounting %s on %s: %w", node, target, errors.Join(errs...))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
