package disks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/anatol/luks.go"
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
	if err := v.SetupMapper(name); err != nil {
		return "", fmt.Errorf("mapping OS disk %s as %s: %w", d.Device, name, err)
	}
	node, err := MapperNode(ctx, sysDir, devDir, name)
	if err != nil {
		_ = luks.Lock(name)
		return "", fmt.Errorf("OS disk mapping: %w", err)
	}
	if err := mountFS(node, d.Mount, []string{"ext4"}, 0); err != nil {
		_ = luks.Lock(name)
		return "", fmt.Errorf("OS disk: %w", err)
	}
	return node, nil
}

// UnsealOS checks that device holds the LUKS2 volume uuid (with our own
// header parser first: checksums, JSON, UUID) and recovers its volume from
// keyslot 0 with key, without touching device-mapper. A key that does not
// open keyslot 0 fails with ErrWrongKey; a volume other than Confidant's
// layout (cipher, sector size) with ErrUnexpected.
func UnsealOS(device, uuid string, key []byte) (*luks.Volume, error) {
	f, err := os.Open(device)
	if err != nil {
		return nil, fmt.Errorf("opening OS disk: %w", err)
	}
	ok, got, err := luks2.IsLUKS2(f)
	f.Close()
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading OS disk %s: %w", device, err)
	case !ok:
		return nil, fmt.Errorf("OS disk %s: %w: no LUKS2 header", device, ErrUnexpected)
	case !strings.EqualFold(got, uuid):
		return nil, fmt.Errorf("OS disk %s: %w: LUKS2 UUID %s, want %s", device, ErrUnexpected, got, uuid)
	}
	v, err := unseal(device, 0, key)
	if err != nil {
		return nil, fmt.Errorf("unlocking OS disk %s: %w", device, err)
	}
	if err := checkVolume(v, uuid); err != nil {
		return nil, fmt.Errorf("OS disk %s: %w", device, err)
	}
	return v, nil
}

// unseal runs luks.go's Open and UnsealVolume on path. luks.go parses the
// header again; a panic on hostile bytes becomes an error.
func unseal(path string, slot int, key []byte) (v *luks.Volume, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, fmt.Errorf("%w: parsing LUKS header: panic: %v", ErrUnexpected, p)
		}
	}()
	dev, err := luks.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnexpected, err)
	}
	defer dev.Close()
	if dev.Version() != 2 {
		return nil, fmt.Errorf("%w: LUKS version %d", ErrUnexpected, dev.Version())
	}
	v, err = dev.UnsealVolume(slot, key)
	switch {
	case errors.Is(err, luks.ErrPassphraseDoesNotMatch):
		return nil, fmt.Errorf("keyslot %d: %w", slot, ErrWrongKey)
	case err != nil:
		return nil, fmt.Errorf("keyslot %d: %w: %v", slot, ErrUnexpected, err)
	}
	return v, nil
}

// checkVolume refuses volumes Confidant does not write: another cipher
// (cipher_null would leave the disk in clear), odd sector sizes, another
// UUID.
func checkVolume(v *luks.Volume, uuid string) error {
	switch {
	case v.StorageEncryption != luks2.Cipher:
		return fmt.Errorf("%w: cipher %q, want %s", ErrUnexpected, v.StorageEncryption, luks2.Cipher)
	case v.StorageSectorSize != 512 && v.StorageSectorSize != 1024 && v.StorageSectorSize != 2048 && v.StorageSectorSize != 4096:
		return fmt.Errorf("%w: sector size %d", ErrUnexpected, v.StorageSectorSize)
	case !strings.EqualFold(v.UUID, uuid):
		return fmt.Errorf("%w: LUKS2 UUID %s, want %s", ErrUnexpected, v.UUID, uuid)
	case v.StorageSize == 0 || v.StorageSize%v.StorageSectorSize != 0:
		return fmt.Errorf("%w: data segment of %d bytes is not a positive multiple of the %d-byte sector", ErrUnexpected, v.StorageSize, v.StorageSectorSize)
	}
	return nil
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
