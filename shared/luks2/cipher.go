package luks2

import (
	"crypto/aes"
	"fmt"
	"unsafe"

	"golang.org/x/crypto/xts"
)

// DataCipher en- and decrypts the data segment the way dm-crypt does for a
// LUKS2 crypt segment written by cryptsetup: aes-xts-plain64, one XTS data
// unit per sector, the tweak being the byte offset within the segment divided
// by 512 (plain64 counts 512-byte units unless iv_large_sectors is set, and
// cryptsetup does not set it), iv_tweak 0. It is safe for concurrent use.
type DataCipher struct {
	c          *xts.Cipher
	sectorSize int
}

// NewDataCipher returns the data cipher for a 32- or 64-byte aes-xts-plain64
// volume key and a sector size of 512, 1024, 2048 or 4096 bytes. The key is
// expanded, not retained.
func NewDataCipher(volumeKey []byte, sectorSize int) (*DataCipher, error) {
	if len(volumeKey) != 32 && len(volumeKey) != 64 {
		return nil, fmt.Errorf("%w: aes-xts-plain64 volume key must be 32 or 64 bytes, got %d", ErrInvalidOptions, len(volumeKey))
	}
	if !validSectorSize(sectorSize) {
		return nil, fmt.Errorf("%w: sector size %d is not 512, 1024, 2048 or 4096", ErrInvalidOptions, sectorSize)
	}
	c, err := xts.NewCipher(aes.NewCipher, volumeKey)
	if err != nil {
		return nil, fmt.Errorf("creating data cipher: %w", err)
	}
	return &DataCipher{c: c, sectorSize: sectorSize}, nil
}

// SectorSize returns the encryption sector size.
func (d *DataCipher) SectorSize() int { return d.sectorSize }

// EncryptSectors encrypts src into dst. offset is the byte offset of src[0]
// within the data segment (not the device); it and len(src) must be multiples
// of the sector size. dst must be at least as long as src and may be src
// itself, but must not otherwise overlap it.
func (d *DataCipher) EncryptSectors(dst, src []byte, offset int64) error {
	return d.crypt(dst, src, offset, true)
}

// DecryptSectors is the inverse of EncryptSectors, with the same rules.
func (d *DataCipher) DecryptSectors(dst, src []byte, offset int64) error {
	return d.crypt(dst, src, offset, false)
}

func (d *DataCipher) crypt(dst, src []byte, offset int64, encrypt bool) error {
	ss := d.sectorSize
	if offset < 0 || offset%int64(ss) != 0 || len(src)%ss != 0 {
		return fmt.Errorf("%w: offset %d and length %d must be multiples of the %d-byte sector", ErrInvalidOptions, offset, len(src), ss)
	}
	if len(dst) < len(src) {
		return fmt.Errorf("%w: destination of %d bytes is shorter than source of %d", ErrInvalidOptions, len(dst), len(src))
	}
	if len(src) > 0 && &dst[0] != &src[0] && overlaps(dst[:len(src)], src) {
		return fmt.Errorf("%w: destination and source overlap", ErrInvalidOptions)
	}
	iv := uint64(offset) / dataSectorIVUnit
	step := uint64(ss / dataSectorIVUnit)
	for i := 0; i < len(src); i += ss {
		if encrypt {
			d.c.Encrypt(dst[i:i+ss], src[i:i+ss], iv)
		} else {
			d.c.Decrypt(dst[i:i+ss], src[i:i+ss], iv)
		}
		iv += step
	}
	return nil
}

func validSectorSize(s int) bool {
	return s == 512 || s == 1024 || s == 2048 || s == 4096
}

// overlaps reports whether two equally long slices share memory, so that the
// xts package's panic on inexact overlap becomes an error.
func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, a1 := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&a[len(a)-1]))
	b0, b1 := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[len(b)-1]))
	return a0 <= b1 && b0 <= a1
}
