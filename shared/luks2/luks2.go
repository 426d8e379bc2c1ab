// Package luks2 writes and reads LUKS2 volumes in pure Go: no cgo, no
// device-mapper, no root.
//
// The layout it writes is the one cryptsetup 2.x writes by default, so stock
// tools open the result (cryptsetup open, luksDump, a recovery passphrase in a
// second keyslot) and so does github.com/anatol/luks.go in the guest:
//
//   - a 16 KiB primary header at offset 0 and its 16 KiB secondary copy at
//     16 KiB, each a 4 KiB binary header followed by a 12 KiB JSON area, with a
//     sha256 checksum over the whole copy;
//   - a keyslots area from 32 KiB up to the data offset (16 MiB by default),
//     filled with random bytes, in which each keyslot holds the volume key
//     anti-forensically split into 4000 stripes (sha256 diffusion) and
//     encrypted with aes-xts-plain64 under a key derived from its passphrase by
//     pbkdf2-sha256 or argon2id;
//   - one crypt segment at the data offset with size "dynamic",
//     aes-xts-plain64, 4096-byte sectors and the IV counted in 512-byte units
//     (cryptsetup's default, no iv_large_sectors);
//   - one pbkdf2-sha256 digest of the volume key binding the keyslots to the
//     segment.
//
// FormatHeader writes that metadata (the agent formats a blank temp disk with
// it), EncryptImage also encrypts a raw filesystem image into the data
// segment (the image tool), Open recovers the volume key from a header written
// here or by cryptsetup (OpenKeyslot from one given keyslot), and IsLUKS2
// tells a formatted disk from a blank one.
package luks2

import (
	"errors"
	"io"
	"runtime"
)

// Outcomes callers branch on. Errors returned by this package wrap them.
var (
	// ErrNotLUKS2 means no LUKS2 header (neither copy) is present.
	ErrNotLUKS2 = errors.New("not a LUKS2 volume")
	// ErrCorruptHeader means a LUKS2 header is present but neither copy
	// verifies (checksum, binary fields or JSON metadata).
	ErrCorruptHeader = errors.New("corrupt LUKS2 header")
	// ErrWrongPassphrase means no keyslot opened with the passphrase: the
	// recovered key did not match the volume key digest.
	ErrWrongPassphrase = errors.New("no keyslot opens with this passphrase")
	// ErrUnsupported means the header is valid but uses something this package
	// does not implement (another cipher, hash or KDF, a reencryption in
	// progress, ...).
	ErrUnsupported = errors.New("unsupported LUKS2 feature")
	// ErrInvalidOptions means Options (or a size passed with them) cannot make
	// a valid volume.
	ErrInvalidOptions = errors.New("invalid LUKS2 options")
)

// KDF types accepted in KDFSpec.Type.
const (
	KDFPBKDF2   = "pbkdf2"
	KDFArgon2id = "argon2id"
)

// Cipher is the only data and keyslot cipher this package writes.
const Cipher = "aes-xts-plain64"

const (
	binHeaderSize     = 4096            // binary part of each header copy
	defaultHeaderSize = 16384           // binary header + JSON area (cryptsetup default)
	defaultSector     = 4096            // data segment sector size
	defaultDataOffset = 16 << 20        // cryptsetup's default data offset
	defaultKeySize    = 64              // aes-xts-plain64 with AES-256
	stripes           = 4000            // anti-forensic stripes (LUKS spec)
	areaAlign         = 4096            // keyslot areas are 4 KiB aligned
	maxKeyslots       = 32              // LUKS2 keyslot limit
	saltSize          = 32              // KDF and digest salt length
	headerSaltSize    = 64              // binary header salt length
	digestIterations  = 1000            // volume key digest; the key is random
	labelSize         = 48              // label and subsystem fields
	csumOffset        = 448             // checksum field in the binary header
	maxArgonMemoryKiB = 4 * 1024 * 1024 // cryptsetup's upper bound (4 GiB)
	minArgonMemoryKiB = 32              // cryptsetup's lower bound
	maxArgonThreads   = 4               // cryptsetup's upper bound when formatting
	minArgonTime      = 4               // cryptsetup's lower bound
	minPBKDF2Iter     = 1000            // cryptsetup's lower bound (NIST SP 800-132)
	maxUint32         = 1<<32 - 1       // JSON integer fields are uint32 in cryptsetup
	dataSectorIVUnit  = 512             // plain64 IV counts 512-byte units
	keyslotSector     = 512             // keyslot areas are encrypted in 512-byte sectors
	maxVolumeKeySize  = 256             // bound for keys read from untrusted headers
	maxSaltSize       = 1024            // bound for salts read from untrusted headers
	maxJSONKeyslotID  = maxKeyslots - 1 // keyslot ids are 0..31
	maxHeaderSize     = 4 * 1024 * 1024 // largest LUKS2 header copy
)

// KDFSpec selects how a keyslot derives its key from its passphrase.
type KDFSpec struct {
	// Type is KDFPBKDF2 (pbkdf2-sha256) or KDFArgon2id.
	Type string
	// Iterations is the pbkdf2 iteration count, at least 1000.
	Iterations int
	// Time is the argon2id pass count, at least 4.
	Time uint32
	// MemoryKiB is the argon2id memory cost in KiB, 32 to 4 GiB.
	MemoryKiB uint32
	// Threads is the argon2id parallelism, 1 to 4.
	Threads uint32
}

// PBKDF2Fast is pbkdf2-sha256 with 1000 iterations, cryptsetup's minimum. Use
// it only for a passphrase that is itself a random key of 256 bits or more
// (the released disk key): a slow KDF adds nothing there, and a TCG guest pays
// seconds for one.
func PBKDF2Fast() KDFSpec {
	return KDFSpec{Type: KDFPBKDF2, Iterations: minPBKDF2Iter}
}

// Argon2idDefault is argon2id with 4 passes over 64 MiB and min(4, CPUs)
// lanes, for a passphrase a person types (the recovery keyslot). It is
// stronger than RFC 9106's second recommended setting (t=3, 64 MiB) and opens
// in well under a second on a host with cryptsetup, while staying usable on a
// small VM; cryptsetup's own calibrated default is up to 1 GiB for 2 s.
func Argon2idDefault() KDFSpec {
	return KDFSpec{
		Type:      KDFArgon2id,
		Time:      4,
		MemoryKiB: 64 * 1024,
		Threads:   uint32(min(maxArgonThreads, runtime.NumCPU())),
	}
}

// KeyslotSpec is one keyslot to create: keyslot i of the volume is
// Options.Keyslots[i].
type KeyslotSpec struct {
	// Passphrase opens the keyslot. Any bytes; not retained.
	Passphrase []byte
	// KDF derives the keyslot key from Passphrase.
	KDF KDFSpec
}

// Options describe a volume to format. Zero values are documented per field.
type Options struct {
	// UUID is the volume UUID in canonical form; "": a random version-4 UUID.
	UUID string
	// Label is the LUKS2 label, at most 47 bytes; "": none.
	Label string
	// Subsystem is the LUKS2 subsystem label, at most 47 bytes; "": none.
	Subsystem string
	// Keyslots to create, 1 to 32; keyslot i is Keyslots[i].
	Keyslots []KeyslotSpec
	// VolumeKey is the aes-xts-plain64 data key, 32 or 64 bytes; nil: 64
	// random bytes (AES-256-XTS). Not retained: the Header holds a copy.
	VolumeKey []byte
	// SectorSize is the data segment sector size, 512, 1024, 2048 or 4096;
	// 0: 4096.
	SectorSize int
	// DataOffset is the byte offset of the data segment, a multiple of 4096
	// large enough for both header copies and all keyslot areas; 0: 16 MiB.
	DataOffset int64
	// Rand is the source of keys, salts, UUID and the keyslots area filler;
	// nil: crypto/rand.
	Rand io.Reader
}

// Header describes a LUKS2 volume written by FormatHeader or EncryptImage, or
// read by Open.
type Header struct {
	// UUID is the volume UUID.
	UUID string
	// Label and Subsystem are the binary header labels ("" when unset).
	Label, Subsystem string
	// DataOffset is the byte offset of the encrypted data segment.
	DataOffset int64
	// DataSize is the byte length of the data segment; 0 when its size is
	// "dynamic" (up to the end of the device, what FormatHeader and
	// EncryptImage write).
	DataSize int64
	// SectorSize is the data segment's encryption sector size in bytes.
	SectorSize int
	// Cipher is the data segment's cipher ("aes-xts-plain64").
	Cipher string
	// Keyslots lists the keyslot numbers present, ascending.
	Keyslots []int
	// Keyslot is the keyslot Open unlocked; -1 from FormatHeader and
	// EncryptImage.
	Keyslot int

	volumeKey []byte
}

// VolumeKey returns the volume key held by h: the slice itself, not a copy.
// The caller zeroes it (or calls Wipe) when done.
func (h *Header) VolumeKey() []byte { return h.volumeKey }

// Wipe zeroes the volume key held by h and drops it.
func (h *Header) Wipe() {
	clear(h.volumeKey)
	h.volumeKey = nil
}
