package disks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/anatol/devmapper.go"

	"github.com/confidant-cvm/confidant/shared/luks2"
)

// Volume is an unlocked LUKS2 volume: where its data segment lies on the
// device and the key that decrypts it, ready to be mapped with dm-crypt.
// Wipe zeroes the key.
type Volume struct {
	// Device is the backing device node.
	Device string
	// UUID is the LUKS2 UUID, in lower case.
	UUID string
	// Cipher is the data segment's cipher (dm-crypt's spec).
	Cipher string
	// SectorSize is the encryption sector size in bytes.
	SectorSize int
	// DataOffset and DataSize place the data segment on Device, in bytes.
	DataOffset, DataSize int64

	key []byte
}

// newVolume describes the volume of hdr on device (deviceSize bytes) and
// takes over hdr's volume key. A "dynamic" segment runs to the end of the
// device.
func newVolume(device string, deviceSize int64, hdr *luks2.Header) *Volume {
	v := &Volume{
		Device:     device,
		UUID:       strings.ToLower(hdr.UUID),
		Cipher:     hdr.Cipher,
		SectorSize: hdr.SectorSize,
		DataOffset: hdr.DataOffset,
		DataSize:   hdr.DataSize,
		key:        hdr.VolumeKey(),
	}
	if v.DataSize == 0 {
		v.DataSize = deviceSize - hdr.DataOffset
	}
	return v
}

// Wipe zeroes the volume key. It may be called more than once.
func (v *Volume) Wipe() {
	clear(v.key)
	v.key = nil
}

// checkVolume refuses volumes Confidant does not write: another cipher
// (cipher_null would leave the disk in clear), odd sector sizes, another
// UUID, a data segment that is empty, not whole sectors or past the end of
// the device (deviceSize bytes).
func checkVolume(v *Volume, uuid string, deviceSize int64) error {
	switch {
	case v.Cipher != luks2.Cipher:
		return fmt.Errorf("%w: cipher %q, want %s", ErrUnexpected, v.Cipher, luks2.Cipher)
	case v.SectorSize != 512 && v.SectorSize != 1024 && v.SectorSize != 2048 && v.SectorSize != 4096:
		return fmt.Errorf("%w: sector size %d", ErrUnexpected, v.SectorSize)
	case !strings.EqualFold(v.UUID, uuid):
		return fmt.Errorf("%w: LUKS2 UUID %s, want %s", ErrUnexpected, v.UUID, uuid)
	case v.DataOffset <= 0 || v.DataOffset%int64(v.SectorSize) != 0:
		return fmt.Errorf("%w: data segment at %d is not on a %d-byte sector boundary past the header", ErrUnexpected, v.DataOffset, v.SectorSize)
	case v.DataSize <= 0 || v.DataSize%int64(v.SectorSize) != 0:
		return fmt.Errorf("%w: data segment of %d bytes is not a positive multiple of the %d-byte sector", ErrUnexpected, v.DataSize, v.SectorSize)
	case v.DataOffset > deviceSize || v.DataSize > deviceSize-v.DataOffset:
		return fmt.Errorf("%w: data segment of %d bytes at %d runs past the %d-byte device", ErrUnexpected, v.DataSize, v.DataOffset, deviceSize)
	}
	return nil
}

// SetupMapper maps the volume with dm-crypt as /dev/dm-N called name, with
// the device-mapper UUID cryptsetup gives it (CRYPT-LUKS2-<uuid>-<name>).
func (v *Volume) SetupMapper(name string) error {
	if len(v.key) == 0 {
		return errors.New("mapping volume: no key (wiped)")
	}
	table := devmapper.CryptTable{
		Length:        uint64(v.DataSize),
		BackendDevice: v.Device,
		BackendOffset: uint64(v.DataOffset),
		Encryption:    v.Cipher,
		Key:           v.key,
		SectorSize:    uint64(v.SectorSize),
	}
	return devmapper.CreateAndLoad(name, dmUUID(v.UUID, name), 0, table)
}

// dmUUID is the device-mapper UUID cryptsetup gives a LUKS2 mapping
// (dm_prepare_uuid).
func dmUUID(uuid, name string) string {
	return "CRYPT-LUKS2-" + strings.ReplaceAll(uuid, "-", "") + "-" + name
}

// unmap removes the mapping called name (after a failure).
func unmap(name string) { _ = devmapper.Remove(name) }
