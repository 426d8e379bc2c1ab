package luks2

import (
	"crypto/aes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"io"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/xts"
)

// limits bound the work a header may demand (KDF costs come from the header,
// which Open does not trust).
type limits struct {
	maxIterations uint64 // pbkdf2 iterations, keyslot and digest
	maxMemoryKiB  uint64 // argon2 memory
	maxTime       uint64 // argon2 passes
	maxThreads    uint64 // argon2 lanes
}

// defaultLimits are cryptsetup's own bounds for opening.
func defaultLimits() limits {
	return limits{
		maxIterations: maxUint32,
		maxMemoryKiB:  maxArgonMemoryKiB,
		maxTime:       maxUint32,
		maxThreads:    255, // argon2 lanes are a uint8 in x/crypto/argon2
	}
}

// hashByName returns the hashes cryptsetup headers name that Go provides.
func hashByName(name string) (func() hash.Hash, bool) {
	switch name {
	case "sha1":
		return sha1.New, true
	case "sha256":
		return sha256.New, true
	case "sha384":
		return sha512.New384, true
	case "sha512":
		return sha512.New, true
	}
	return nil, false
}

// deriveKey runs the keyslot KDF k over passphrase.
func deriveKey(k kdfJSON, passphrase []byte, keyLen int, lim limits) ([]byte, error) {
	salt, err := decodeSalt(k.Salt)
	if err != nil {
		return nil, fmt.Errorf("kdf salt: %w", err)
	}
	switch k.Type {
	case "pbkdf2":
		h, ok := hashByName(k.Hash)
		if !ok {
			return nil, fmt.Errorf("%w: pbkdf2 hash %q", ErrUnsupported, k.Hash)
		}
		if k.Iterations < 1 || k.Iterations > lim.maxIterations {
			return nil, fmt.Errorf("%w: pbkdf2 iterations %d outside [1, %d]", ErrCorruptHeader, k.Iterations, lim.maxIterations)
		}
		key, err := pbkdf2.Key(h, string(passphrase), salt, int(k.Iterations), keyLen)
		if err != nil {
			return nil, fmt.Errorf("deriving pbkdf2 key: %w", err)
		}
		return key, nil
	case "argon2i", "argon2id":
		switch {
		case k.Time < 1 || k.Time > lim.maxTime:
			return nil, fmt.Errorf("%w: argon2 time %d outside [1, %d]", ErrCorruptHeader, k.Time, lim.maxTime)
		case k.CPUs < 1 || k.CPUs > lim.maxThreads:
			return nil, fmt.Errorf("%w: argon2 cpus %d outside [1, %d]", ErrCorruptHeader, k.CPUs, lim.maxThreads)
		case k.Memory < 8*k.CPUs || k.Memory > lim.maxMemoryKiB:
			return nil, fmt.Errorf("%w: argon2 memory %d KiB outside [%d, %d]", ErrCorruptHeader, k.Memory, 8*k.CPUs, lim.maxMemoryKiB)
		}
		f := argon2.IDKey
		if k.Type == "argon2i" {
			f = argon2.Key
		}
		return f(passphrase, salt, uint32(k.Time), uint32(k.Memory), uint8(k.CPUs), uint32(keyLen)), nil
	}
	return nil, fmt.Errorf("%w: kdf %q", ErrUnsupported, k.Type)
}

func decodeSalt(s string) ([]byte, error) {
	if base64.StdEncoding.DecodedLen(len(s)) > maxSaltSize {
		return nil, fmt.Errorf("%w: salt longer than %d bytes", ErrCorruptHeader, maxSaltSize)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: decoding base64: %v", ErrCorruptHeader, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty salt", ErrCorruptHeader)
	}
	return b, nil
}

// afSplit splits key into stripes blocks (LUKS anti-forensic split): all but
// the last block are random, the last is key XOR the diffused XOR-chain of the
// others, so losing any one block loses the key.
func afSplit(key []byte, nStripes int, newHash func() hash.Hash, rnd io.Reader) ([]byte, error) {
	n := len(key)
	out := make([]byte, n*nStripes)
	if _, err := io.ReadFull(rnd, out[:n*(nStripes-1)]); err != nil {
		return nil, fmt.Errorf("reading random stripes: %w", err)
	}
	d := make([]byte, n)
	defer clear(d)
	h := newHash()
	for i := range nStripes - 1 {
		xorInto(d, out[i*n:(i+1)*n])
		diffuse(d, h)
	}
	last := out[(nStripes-1)*n:]
	for j := range last {
		last[j] = d[j] ^ key[j]
	}
	return out, nil
}

// afMerge inverts afSplit.
func afMerge(material []byte, keyLen, nStripes int, newHash func() hash.Hash) []byte {
	d := make([]byte, keyLen)
	h := newHash()
	for i := range nStripes - 1 {
		xorInto(d, material[i*keyLen:(i+1)*keyLen])
		diffuse(d, h)
	}
	xorInto(d, material[(nStripes-1)*keyLen:nStripes*keyLen])
	return d
}

func xorInto(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}

// diffuse replaces each hash-sized block i of b (the last one possibly short)
// with H(be32(i) || block), truncated to the block's length.
func diffuse(b []byte, h hash.Hash) {
	ds := h.Size()
	var ctr [4]byte
	sum := make([]byte, 0, ds)
	for i, off := 0, 0; off < len(b); i, off = i+1, off+ds {
		end := min(off+ds, len(b))
		binary.BigEndian.PutUint32(ctr[:], uint32(i))
		h.Reset()
		h.Write(ctr[:])
		h.Write(b[off:end])
		sum = h.Sum(sum[:0])
		copy(b[off:end], sum)
	}
}

// afSectors is the size of a keyslot's split key rounded up to whole
// 512-byte sectors, as cryptsetup stores it.
func afSectors(keyLen int) int {
	return (keyLen*stripes + keyslotSector - 1) / keyslotSector * keyslotSector
}

// cryptArea en- or decrypts keyslot material in place with aes-xts-plain64
// in 512-byte sectors, the IV counting sectors from the start of the area.
func cryptArea(key, buf []byte, encrypt bool) error {
	if len(key) != 32 && len(key) != 64 {
		return fmt.Errorf("%w: aes-xts key of %d bytes", ErrUnsupported, len(key))
	}
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		return fmt.Errorf("creating keyslot cipher: %w", err)
	}
	for i := 0; i < len(buf)/keyslotSector; i++ {
		s := buf[i*keyslotSector : (i+1)*keyslotSector]
		if encrypt {
			c.Encrypt(s, s, uint64(i))
		} else {
			c.Decrypt(s, s, uint64(i))
		}
	}
	return nil
}
