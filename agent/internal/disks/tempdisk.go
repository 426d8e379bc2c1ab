package disks

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/confidant-cvm/confidant/shared/luks2"
)

// TempKeyInfo is the HKDF info string of the temp disk key.
const TempKeyInfo = "confidant temp disk v1"

// TempKeySize is the length of the temp disk key (keyslot 0's passphrase).
const TempKeySize = 32

// TempKey derives the temp disk's keyslot 0 passphrase:
// HKDF-SHA256(secret = released key, salt = the LUKS UUID in lower-case
// canonical text form, info = TempKeyInfo), 32 bytes. The caller zeroes it.
func TempKey(released []byte, uuid string) ([]byte, error) {
	if len(released) == 0 {
		return nil, errors.New("deriving temp disk key: empty released key")
	}
	if uuid == "" {
		return nil, errors.New("deriving temp disk key: empty UUID")
	}
	k, err := hkdf.Key(sha256.New, released, []byte(strings.ToLower(uuid)), TempKeyInfo, TempKeySize)
	if err != nil {
		return nil, fmt.Errorf("deriving temp disk key: %w", err)
	}
	return k, nil
}

// TempState is what Inspect found on a temp disk.
type TempState int

// The temp disk states.
const (
	// TempBlank: no LUKS2 header (a new disk, or anything but LUKS2).
	TempBlank TempState = iota
	// TempOurs: a LUKS2 header whose keyslot 0 opens with the key derived
	// for its UUID.
	TempOurs
	// TempForeign: a LUKS2 header the derived key does not open.
	TempForeign
	// TempCorrupt: a LUKS2 magic but no header copy that verifies.
	TempCorrupt
)

func (s TempState) String() string {
	switch s {
	case TempBlank:
		return "blank"
	case TempOurs:
		return "ours"
	case TempForeign:
		return "foreign"
	case TempCorrupt:
		return "corrupt"
	}
	return fmt.Sprintf("TempState(%d)", int(s))
}

// Inspect reads a temp disk's header and says whose it is. For TempOurs
// and TempForeign it also returns the volume's UUID. Only I/O errors are
// returned as errors.
func Inspect(r io.ReaderAt, released []byte) (TempState, string, error) {
	state, uuid, hdr, err := inspectTemp(r, released)
	if hdr != nil {
		hdr.Wipe()
	}
	return state, uuid, err
}

// inspectTemp is Inspect that also returns, for TempOurs, the header opened
// from keyslot 0 with the volume key in it (the caller wipes it).
func inspectTemp(r io.ReaderAt, released []byte) (TempState, string, *luks2.Header, error) {
	ok, uuid, err := luks2.IsLUKS2(r)
	switch {
	case errors.Is(err, luks2.ErrCorruptHeader):
		return TempCorrupt, "", nil, nil
	case err != nil:
		return 0, "", nil, fmt.Errorf("reading temp disk header: %w", err)
	case !ok:
		return TempBlank, "", nil, nil
	}
	uuid = strings.ToLower(uuid)
	key, err := TempKey(released, uuid)
	if err != nil {
		return 0, "", nil, err
	}
	defer clear(key)
	// Only keyslot 0 is ours: no other is tried.
	_, hdr, err := luks2.OpenKeyslot(r, key, 0)
	switch {
	case err == nil:
		return TempOurs, uuid, hdr, nil
	case errors.Is(err, luks2.ErrWrongPassphrase), errors.Is(err, luks2.ErrUnsupported):
		return TempForeign, uuid, nil, nil
	case errors.Is(err, luks2.ErrCorruptHeader), errors.Is(err, luks2.ErrNotLUKS2):
		return TempCorrupt, uuid, nil, nil
	}
	return 0, "", nil, fmt.Errorf("opening temp disk header: %w", err)
}

// Temp disk layout.
const (
	// tempDataOffset is where the data segment starts: room for the two
	// 16 KiB header copies and keyslot 0 (258048 bytes for a 512-bit key),
	// rounded up to 1 MiB, instead of luks2's (and cryptsetup's) default of
	// 16 MiB, whose keyslots area the format would have to fill with 16 MiB
	// of random bytes for slots a temp disk never uses. cryptsetup opens
	// either layout; so does every boot, since the offset is read from the
	// header.
	tempDataOffset = 1 << 20
	tempSector     = 4096
	// minTempData is the smallest data segment worth a filesystem.
	minTempData = 16 << 20
	// TempLabel is the LUKS2 label of the temp disk.
	TempLabel = "confidant-temp"
)

// Disk is the device a temp disk is prepared on: a block device or, in
// tests, an image file.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	io.Seeker
	Sync() error
}

// TempVolume is a temp disk ready to be mapped: its UUID, what it was found
// as, and the unlocked volume (with the volume key: Wipe zeroes it).
type TempVolume struct {
	// UUID is the LUKS2 UUID.
	UUID string
	// Found is the state the disk was in.
	Found TempState
	// Formatted is true when a new LUKS2 header was written: the filesystem
	// must be made.
	Formatted bool

	hdr  *luks2.Header // keyslot 0 unlocked, or as just formatted
	size int64         // the disk's size in bytes
}

// Volume returns the volume to map from device (the disk PrepareTemp was
// given). It shares the volume key with v.
func (v *TempVolume) Volume(device string) *Volume {
	return newVolume(device, v.size, v.hdr)
}

// Wipe zeroes the volume key.
func (v *TempVolume) Wipe() {
	if v.hdr != nil {
		v.hdr.Wipe()
	}
}

// PrepareOptions tune PrepareTemp. Zero values are documented per field.
type PrepareOptions struct {
	// AllowReset reformats a temp disk whose header the key does not open
	// (foreign or corrupt), destroying what it held. false: such a disk is
	// an error (ErrForeign, ErrCorrupt).
	AllowReset bool
	// Rand is the source of the UUID, volume key and salts; nil: crypto/rand.
	Rand io.Reader
}

// PrepareTemp inspects the temp disk and unlocks it when it is ours, or
// formats it when it is blank (or foreign or corrupt and opts.AllowReset):
// a new UUID, keyslot 0's passphrase derived from it (TempKey), a LUKS2
// header (pbkdf2 at cryptsetup's minimum since the passphrase is a random
// 256-bit key) whose data segment starts at 1 MiB and runs to the end of the
// disk, synced to the disk and read back. It writes nothing to a disk that
// is ours. The caller wipes the returned volume.
//
// Formatting overwrites the first MiB (header copies, keyslot 0 and filler):
// every keyslot a Confidant temp disk ever held, in this layout or in the
// earlier one at 16 MiB, lies there.
func PrepareTemp(disk Disk, released []byte, opts PrepareOptions) (*TempVolume, error) {
	size, err := disk.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("sizing temp disk: %w", err)
	}
	state, uuid, hdr, err := inspectTemp(disk, released)
	if err != nil {
		return nil, err
	}
	switch state {
	case TempOurs:
		return &TempVolume{UUID: uuid, Found: state, hdr: hdr, size: size}, nil
	case TempForeign, TempCorrupt:
		if !opts.AllowReset {
			sentinel := ErrForeign
			if state == TempCorrupt {
				sentinel = ErrCorrupt
			}
			if uuid != "" {
				return nil, fmt.Errorf("temp disk (LUKS2 UUID %s): %w (reset not allowed)", uuid, sentinel)
			}
			return nil, fmt.Errorf("temp disk: %w (reset not allowed)", sentinel)
		}
	}
	dataSize := (size - tempDataOffset) &^ (tempSector - 1)
	if dataSize < minTempData {
		return nil, fmt.Errorf("temp disk of %d bytes: %w (want at least %d)", size, ErrTooSmall, tempDataOffset+minTempData)
	}
	if size%tempSector != 0 {
		// dm-crypt maps the whole device past the header ("dynamic"), which
		// must be a whole number of sectors.
		return nil, fmt.Errorf("temp disk of %d bytes: %w: size is not a multiple of %d bytes", size, ErrUnexpected, tempSector)
	}
	uuid, err = luks2.NewUUID(opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("formatting temp disk: %w", err)
	}
	key, err := TempKey(released, uuid)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	hdr, err = luks2.FormatHeader(disk, dataSize, luks2.Options{
		UUID:       uuid,
		Label:      TempLabel,
		Keyslots:   []luks2.KeyslotSpec{{Passphrase: key, KDF: luks2.PBKDF2Fast()}},
		DataOffset: tempDataOffset,
		Rand:       opts.Rand,
	})
	if err != nil {
		return nil, fmt.Errorf("formatting temp disk: %w", err)
	}
	if err := disk.Sync(); err != nil {
		hdr.Wipe()
		return nil, fmt.Errorf("syncing temp disk header: %w", err)
	}
	// Read the header back (checksums, metadata, UUID): a write the disk
	// lost would otherwise show only at the next boot, as a corrupt header.
	if ok, got, err := luks2.IsLUKS2(disk); err != nil || !ok || !strings.EqualFold(got, uuid) {
		hdr.Wipe()
		return nil, fmt.Errorf("temp disk: %w: the header just written does not read back (LUKS2 %v, UUID %q): %v", ErrUnexpected, ok, got, err)
	}
	return &TempVolume{UUID: uuid, Found: state, Formatted: true, hdr: hdr, size: size}, nil
}
