// Package encrypt turns a raw root filesystem image into the LUKS2 OS disk a
// Confidant guest boots from, offline and without root or device-mapper.
//
// Keyslot 0 holds the disk key, the secret the verifier releases to an
// attested guest: its passphrase is the raw key bytes, exactly as released,
// behind pbkdf2-sha256 with 1000 iterations (the key is random, a slow KDF
// would only slow the boot). Keyslot 1, when asked for, holds a recovery
// passphrase behind argon2id, for stock cryptsetup. The layout is cryptsetup's
// default (see shared/luks2): data at 16 MiB, aes-xts-plain64 with a 512-bit
// volume key, 4096-byte sectors.
package encrypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/confidant-cvm/confidant/shared/durable"
	"github.com/confidant-cvm/confidant/shared/luks2"
)

// DiskKeySize is the length of a generated disk key (256 bits).
const DiskKeySize = 32

// Outcomes callers branch on.
var (
	// ErrNotExt4 means the input has no ext2/3/4 superblock.
	ErrNotExt4 = errors.New("input is not an ext4 filesystem image")
	// ErrBlockSize means the filesystem's blocks are smaller than the 4096-byte
	// encryption sectors, so the guest kernel would refuse to mount it.
	ErrBlockSize = errors.New("filesystem block size below 4096 bytes")
	// ErrTruncated means the image is shorter than the filesystem it holds.
	ErrTruncated = errors.New("filesystem image truncated")
	// ErrSelfCheck means the written disk did not open or decrypt back to the
	// input: the output was not kept.
	ErrSelfCheck = errors.New("encrypted disk failed its self-check")
)

// Spec describes one OS disk to build. Zero values are documented per field.
type Spec struct {
	// Input is the raw filesystem image (ext4 made with mke2fs -b 4096).
	Input string
	// Output is the LUKS2 disk image. It is written next to Output and
	// renamed into place, so a failed run leaves no partial disk behind.
	Output string
	// DiskKey is the keyslot 0 passphrase, the key the verifier will release;
	// nil: DiskKeySize random bytes. At least 16 bytes.
	DiskKey []byte
	// RecoveryPassphrase, if not empty, is put in keyslot 1.
	RecoveryPassphrase []byte
	// RecoveryKDF protects keyslot 1; zero: luks2.Argon2idDefault().
	RecoveryKDF luks2.KDFSpec
	// UUID is the LUKS2 UUID the agent looks for (its luks_uuid); "": random.
	UUID string
	// Label is the LUKS2 label; "": none.
	Label string
	// AnyFilesystem skips the ext4 checks (for other filesystems the guest can
	// mount on a 4096-byte-sector device).
	AnyFilesystem bool
	// Progress, if not nil, receives the bytes encrypted so far and the total.
	Progress func(done, total int64)
	// Rand is the source of keys and salts; nil: crypto/rand.
	Rand io.Reader
}

// Result describes the disk written.
type Result struct {
	// UUID is the LUKS2 UUID.
	UUID string
	// DiskKey is the keyslot 0 passphrase, to be registered with the verifier.
	// The caller zeroes it once stored.
	DiskKey []byte
	// Size is the size of the output file in bytes.
	Size int64
	// DataOffset is where the encrypted filesystem starts.
	DataOffset int64
	// BlockSize is the ext4 block size (0 with AnyFilesystem and no ext4).
	BlockSize int
}

// Encrypt builds the encrypted OS disk described by spec. It logs what it
// does to log, never a key.
func Encrypt(ctx context.Context, spec Spec, log *slog.Logger) (*Result, error) {
	if spec.Input == "" || spec.Output == "" {
		return nil, errors.New("encrypting OS disk: input and output are required")
	}
	rnd := spec.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	in, size, fs, err := openInput(spec)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	diskKey, err := diskKeyOf(spec, rnd)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			clear(diskKey)
		}
	}()
	res, err := writeDisk(ctx, spec, in, size, luksOptions(spec, diskKey, rnd), log)
	if err != nil {
		return nil, err
	}
	ok = true
	res.DiskKey, res.BlockSize = diskKey, fs.blockSize
	return res, nil
}

// openInput opens the plain root filesystem and checks it.
func openInput(spec Spec) (_ *os.File, size int64, _ ext4Info, err error) {
	var fs ext4Info
	in, err := os.Open(spec.Input)
	if err != nil {
		return nil, 0, fs, fmt.Errorf("opening input: %w", err)
	}
	defer func() {
		if err != nil {
			in.Close()
		}
	}()
	st, err := in.Stat()
	if err != nil {
		return nil, 0, fs, fmt.Errorf("inspecting input: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return nil, 0, fs, fmt.Errorf("input %s is not a non-empty regular file", spec.Input)
	}
	if !spec.AnyFilesystem {
		if fs, err = checkExt4(in, st.Size()); err != nil {
			return nil, 0, fs, fmt.Errorf("checking %s: %w", spec.Input, err)
		}
	}
	return in, st.Size(), fs, nil
}

// diskKeyOf is a copy of the spec's disk key, or a new one from rnd.
func diskKeyOf(spec Spec, rnd io.Reader) ([]byte, error) {
	diskKey := bytes.Clone(spec.DiskKey)
	if diskKey == nil {
		diskKey = make([]byte, DiskKeySize)
		if _, err := io.ReadFull(rnd, diskKey); err != nil {
			return nil, fmt.Errorf("generating disk key: %w", err)
		}
	} else if len(diskKey) < 16 {
		return nil, fmt.Errorf("%w: disk key of %d bytes, want at least 16", luks2.ErrInvalidOptions, len(diskKey))
	}
	return diskKey, nil
}

// luksOptions are the LUKS2 header's: the disk key in keyslot 0, the
// recovery passphrase, if any, in keyslot 1.
func luksOptions(spec Spec, diskKey []byte, rnd io.Reader) luks2.Options {
	opts := luks2.Options{
		UUID:     spec.UUID,
		Label:    spec.Label,
		Keyslots: []luks2.KeyslotSpec{{Passphrase: diskKey, KDF: luks2.PBKDF2Fast()}},
		Rand:     rnd,
	}
	if len(spec.RecoveryPassphrase) > 0 {
		kdf := spec.RecoveryKDF
		if kdf == (luks2.KDFSpec{}) {
			kdf = luks2.Argon2idDefault()
		}
		opts.Keyslots = append(opts.Keyslots, luks2.KeyslotSpec{Passphrase: spec.RecoveryPassphrase, KDF: kdf})
	}
	return opts
}

// writeDisk encrypts in into a temporary file beside the output, checks
// it, and renames it into place. The result lacks DiskKey and BlockSize.
func writeDisk(ctx context.Context, spec Spec, in *os.File, size int64, opts luks2.Options, log *slog.Logger) (*Result, error) {
	diskKey := opts.Keyslots[0].Passphrase
	dir, base := filepath.Split(spec.Output)
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("creating output: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	log.Info("encrypting OS disk", "input", spec.Input, "bytes", size, "output", spec.Output,
		"recovery_keyslot", len(opts.Keyslots) > 1)
	start := time.Now()
	hdr, err := luks2.EncryptImage(ctx, in, size, tmp, opts, spec.Progress)
	if err != nil {
		return nil, fmt.Errorf("encrypting %s: %w", spec.Input, err)
	}
	defer hdr.Wipe()
	elapsed := time.Since(start)
	if err := selfCheck(tmp, in, size, diskKey, hdr); err != nil {
		return nil, err
	}
	out, err := tmp.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspecting output: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("closing output: %w", err)
	}
	if err := os.Rename(tmp.Name(), spec.Output); err != nil {
		return nil, fmt.Errorf("renaming output into place: %w", err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return nil, err
	}
	ok = true
	log.Info("encrypted OS disk", "uuid", hdr.UUID, "output", spec.Output, "bytes", out.Size(),
		"data_offset", hdr.DataOffset, "elapsed", elapsed.Round(time.Millisecond),
		"mib_per_s", float64(size)/(1<<20)/max(elapsed.Seconds(), 1e-9))
	return &Result{UUID: hdr.UUID, Size: out.Size(), DataOffset: hdr.DataOffset}, nil
}

// selfCheck reopens the written disk with the disk key, as the guest will,
// and decrypts the first and last MiB back to the input.
func selfCheck(disk *os.File, in io.ReaderAt, inSize int64, diskKey []byte, hdr *luks2.Header) error {
	key, got, err := luks2.Open(disk, diskKey)
	if err != nil {
		return fmt.Errorf("%w: opening with the disk key: %v", ErrSelfCheck, err)
	}
	defer clear(key)
	if subtle.ConstantTimeCompare(key, hdr.VolumeKey()) != 1 || got.UUID != hdr.UUID || got.Keyslot != 0 {
		return fmt.Errorf("%w: keyslot 0 yields another volume", ErrSelfCheck)
	}
	dc, err := luks2.NewDataCipher(key, got.SectorSize)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSelfCheck, err)
	}
	const span = 1 << 20
	ss := int64(got.SectorSize)
	padded := (inSize + ss - 1) / ss * ss
	for _, off := range []int64{0, max(0, padded-span) / ss * ss} {
		n := min(span, padded-off)
		ct := make([]byte, n)
		if _, err := disk.ReadAt(ct, got.DataOffset+off); err != nil {
			return fmt.Errorf("%w: reading back at %d: %v", ErrSelfCheck, off, err)
		}
		if err := dc.DecryptSectors(ct, ct, off); err != nil {
			return fmt.Errorf("%w: %v", ErrSelfCheck, err)
		}
		want := make([]byte, n)
		if _, err := in.ReadAt(want[:min(n, inSize-off)], off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: rereading input at %d: %v", ErrSelfCheck, off, err)
		}
		if !bytes.Equal(ct, want) {
			return fmt.Errorf("%w: data at %d does not decrypt to the input", ErrSelfCheck, off)
		}
	}
	return nil
}

// ext4Info is what the superblock says.
type ext4Info struct {
	blockSize int
	size      int64 // filesystem size in bytes
}

// ext2/3/4 superblock fields (little endian), offsets within the superblock
// that starts 1024 bytes into the image.
const (
	sbOffset        = 1024
	sbSize          = 1024
	sbBlocksLo      = 0x04
	sbLogBlockSize  = 0x18
	sbMagic         = 0x38
	sbIncompat      = 0x60
	sbBlocksHi      = 0x150
	extMagic        = 0xef53
	incompat64Bit   = 0x80
	maxLogBlockSize = 6 // 64 KiB blocks
	sectorSize      = 4096
)

// checkExt4 reads the ext superblock and checks that the guest can mount the
// filesystem from a 4096-byte-sector dm-crypt device and that the image
// holds the whole filesystem.
func checkExt4(r io.ReaderAt, size int64) (ext4Info, error) {
	sb := make([]byte, sbSize)
	if n, err := r.ReadAt(sb, sbOffset); n < len(sb) {
		if err == nil || errors.Is(err, io.EOF) {
			return ext4Info{}, ErrNotExt4
		}
		return ext4Info{}, fmt.Errorf("reading superblock: %w", err)
	}
	info, err := parseSuperblock(sb)
	if err != nil {
		return ext4Info{}, err
	}
	if info.size > size {
		return ext4Info{}, fmt.Errorf("%w: filesystem is %d bytes, image %d", ErrTruncated, info.size, size)
	}
	return info, nil
}

// parseSuperblock decodes the fields checkExt4 needs from a 1024-byte ext
// superblock.
func parseSuperblock(sb []byte) (ext4Info, error) {
	if len(sb) < sbSize || binary.LittleEndian.Uint16(sb[sbMagic:]) != extMagic {
		return ext4Info{}, ErrNotExt4
	}
	logBS := binary.LittleEndian.Uint32(sb[sbLogBlockSize:])
	if logBS > maxLogBlockSize {
		return ext4Info{}, fmt.Errorf("%w: block size exponent %d", ErrNotExt4, logBS)
	}
	bs := 1024 << logBS
	if bs < sectorSize {
		return ext4Info{}, fmt.Errorf("%w: %d-byte blocks (make it with mke2fs -b 4096)", ErrBlockSize, bs)
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[sbBlocksLo:]))
	if binary.LittleEndian.Uint32(sb[sbIncompat:])&incompat64Bit != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[sbBlocksHi:])) << 32
	}
	if blocks == 0 || blocks > (1<<62)/uint64(bs) {
		return ext4Info{}, fmt.Errorf("%w: block count %d", ErrNotExt4, blocks)
	}
	return ext4Info{blockSize: bs, size: int64(blocks) * int64(bs)}, nil
}
