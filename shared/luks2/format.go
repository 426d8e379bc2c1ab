package luks2

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// FormatHeader writes a new LUKS2 header to w: the keyslots area (random
// filler holding each keyslot's encrypted split key), then the secondary and
// last the primary header copy. It does not touch the data segment, which
// starts at the returned Header's DataOffset. dataSize is the size in bytes of
// the data segment that will follow (device size minus DataOffset); it must be
// a positive multiple of the sector size. The segment is recorded with size
// "dynamic", so dm-crypt uses whatever the device holds past DataOffset.
//
// The returned Header holds the volume key (VolumeKey); the caller zeroes it.
// FormatHeader does not sync w.
func FormatHeader(w io.WriterAt, dataSize int64, opts Options) (*Header, error) {
	p, err := newPlan(opts, dataSize)
	if err != nil {
		return nil, err
	}
	if err := p.write(w); err != nil {
		p.wipe()
		return nil, err
	}
	return p.header(), nil
}

// plan is a fully computed header, ready to be written.
type plan struct {
	hdrSize     int64
	dataOffset  int64
	sectorSize  int
	uuid        string
	label       string
	subsystem   string
	volumeKey   []byte
	meta        []byte // JSON area contents
	headerSalts [2][]byte
	areas       []keyslotArea
	rnd         io.Reader
	filler      cipher.Block // keyslots area filler, see newFiller
}

type keyslotArea struct {
	offset   int64
	material []byte // encrypted split key
}

// newPlan validates opts and computes everything the header holds, including
// the (possibly slow) keyslot KDFs.
func newPlan(opts Options, dataSize int64) (*plan, error) {
	p := &plan{
		hdrSize:    defaultHeaderSize,
		dataOffset: opts.DataOffset,
		sectorSize: opts.SectorSize,
		uuid:       opts.UUID,
		label:      opts.Label,
		subsystem:  opts.Subsystem,
		rnd:        opts.Rand,
	}
	if p.rnd == nil {
		p.rnd = rand.Reader
	}
	if p.dataOffset == 0 {
		p.dataOffset = defaultDataOffset
	}
	if p.sectorSize == 0 {
		p.sectorSize = defaultSector
	}
	keyLen := defaultKeySize
	if opts.VolumeKey != nil {
		keyLen = len(opts.VolumeKey)
	}
	if err := validateOptions(opts, p, keyLen, dataSize); err != nil {
		return nil, err
	}

	p.volumeKey = make([]byte, keyLen)
	if opts.VolumeKey != nil {
		copy(p.volumeKey, opts.VolumeKey)
	} else if _, err := io.ReadFull(p.rnd, p.volumeKey); err != nil {
		return nil, fmt.Errorf("generating volume key: %w", err)
	}
	if err := p.build(opts.Keyslots); err != nil {
		p.wipe()
		return nil, err
	}
	return p, nil
}

// validateOptions reports every problem with opts at once.
func validateOptions(opts Options, p *plan, keyLen int, dataSize int64) error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, a...)...))
	}
	if p.uuid != "" && !validUUID(p.uuid) {
		bad("UUID %q is not in canonical 8-4-4-4-12 hex form", p.uuid)
	}
	if len(p.label) >= labelSize || strings.IndexByte(p.label, 0) >= 0 {
		bad("label must be at most %d bytes without NUL", labelSize-1)
	}
	if len(p.subsystem) >= labelSize || strings.IndexByte(p.subsystem, 0) >= 0 {
		bad("subsystem must be at most %d bytes without NUL", labelSize-1)
	}
	if keyLen != 32 && keyLen != 64 {
		bad("volume key must be 32 or 64 bytes for %s, got %d", Cipher, keyLen)
	}
	if !validSectorSize(p.sectorSize) {
		bad("sector size %d is not 512, 1024, 2048 or 4096", p.sectorSize)
	}
	if n := len(opts.Keyslots); n < 1 || n > maxKeyslots {
		bad("%d keyslots, want 1 to %d", n, maxKeyslots)
	}
	for i, ks := range opts.Keyslots {
		if len(ks.Passphrase) == 0 {
			bad("keyslot %d: empty passphrase", i)
		}
		if err := validateKDF(ks.KDF); err != nil {
			bad("keyslot %d: %v", i, err)
		}
	}
	if p.dataOffset < 0 || p.dataOffset%areaAlign != 0 {
		bad("data offset %d is not a non-negative multiple of %d", p.dataOffset, areaAlign)
	} else if need := 2*p.hdrSize + int64(len(opts.Keyslots))*areaSize(keyLen); p.dataOffset < need {
		bad("data offset %d leaves no room for 2 headers and %d keyslots (%d bytes)", p.dataOffset, len(opts.Keyslots), need)
	}
	if validSectorSize(p.sectorSize) && (dataSize <= 0 || dataSize%int64(p.sectorSize) != 0) {
		bad("data size %d is not a positive multiple of the %d-byte sector", dataSize, p.sectorSize)
	}
	return errors.Join(errs...)
}

func validateKDF(k KDFSpec) error {
	switch k.Type {
	case KDFPBKDF2:
		if k.Iterations < minPBKDF2Iter || k.Iterations > maxUint32 {
			return fmt.Errorf("pbkdf2 iterations %d outside [%d, %d]", k.Iterations, minPBKDF2Iter, maxUint32)
		}
	case KDFArgon2id:
		var errs []error
		if k.Time < minArgonTime {
			errs = append(errs, fmt.Errorf("argon2id time %d below %d", k.Time, minArgonTime))
		}
		if k.Threads < 1 || k.Threads > maxArgonThreads {
			errs = append(errs, fmt.Errorf("argon2id threads %d outside [1, %d]", k.Threads, maxArgonThreads))
		}
		if k.MemoryKiB < max(minArgonMemoryKiB, 8*k.Threads) || k.MemoryKiB > maxArgonMemoryKiB {
			errs = append(errs, fmt.Errorf("argon2id memory %d KiB outside [%d, %d]", k.MemoryKiB, max(minArgonMemoryKiB, 8*k.Threads), maxArgonMemoryKiB))
		}
		return errors.Join(errs...)
	default:
		return fmt.Errorf("KDF type %q is not %q or %q", k.Type, KDFPBKDF2, KDFArgon2id)
	}
	return nil
}

// areaSize is the keyslot area for a key of keyLen bytes, 4 KiB aligned
// (258048 bytes for a 64-byte key, as cryptsetup allots).
func areaSize(keyLen int) int64 {
	return (int64(afSectors(keyLen)) + areaAlign - 1) / areaAlign * areaAlign
}

// build fills in the keyslots, the digest and the JSON area.
func (p *plan) build(specs []KeyslotSpec) error {
	if p.uuid == "" {
		u, err := randomUUID(p.rnd)
		if err != nil {
			return err
		}
		p.uuid = u
	}
	keyLen := len(p.volumeKey)
	aSize := areaSize(keyLen)
	meta := metadata{
		Keyslots: make(map[string]keyslotJSON, len(specs)),
		Tokens:   map[string]json.RawMessage{},
		Segments: map[string]segmentJSON{"0": {
			Type:       "crypt",
			Offset:     strconv.FormatInt(p.dataOffset, 10),
			Size:       "dynamic",
			IVTweak:    "0",
			Encryption: Cipher,
			SectorSize: p.sectorSize,
		}},
		Config: configJSON{
			JSONSize:     strconv.FormatInt(p.hdrSize-binHeaderSize, 10),
			KeyslotsSize: strconv.FormatInt(p.dataOffset-2*p.hdrSize, 10),
		},
	}
	ids := make([]string, 0, len(specs))
	for i, spec := range specs {
		id := strconv.Itoa(i)
		ids = append(ids, id)
		off := 2*p.hdrSize + int64(i)*aSize
		ks, material, err := p.keyslot(spec, off, aSize)
		if err != nil {
			return fmt.Errorf("creating keyslot %d: %w", i, err)
		}
		meta.Keyslots[id] = ks
		p.areas = append(p.areas, keyslotArea{offset: off, material: material})
	}
	salt, err := p.random(saltSize)
	if err != nil {
		return err
	}
	digest, err := pbkdf2.Key(sha256.New, string(p.volumeKey), salt, digestIterations, sha256.Size)
	if err != nil {
		return fmt.Errorf("computing volume key digest: %w", err)
	}
	meta.Digests = map[string]digestJSON{"0": {
		Type:       "pbkdf2",
		Keyslots:   ids,
		Segments:   []string{"0"},
		Hash:       "sha256",
		Iterations: digestIterations,
		Salt:       base64.StdEncoding.EncodeToString(salt),
		Digest:     base64.StdEncoding.EncodeToString(digest),
	}}
	js, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("encoding JSON metadata: %w", err)
	}
	if int64(len(js)) >= p.hdrSize-binHeaderSize {
		return fmt.Errorf("%w: JSON metadata of %d bytes does not fit the %d-byte area", ErrInvalidOptions, len(js), p.hdrSize-binHeaderSize)
	}
	p.meta = js
	for i := range p.headerSalts {
		if p.headerSalts[i], err = p.random(headerSaltSize); err != nil {
			return err
		}
	}
	return nil
}

// keyslot derives the keyslot key, splits the volume key and encrypts the
// split key for the area at off.
func (p *plan) keyslot(spec KeyslotSpec, off, size int64) (keyslotJSON, []byte, error) {
	keyLen := len(p.volumeKey)
	salt, err := p.random(saltSize)
	if err != nil {
		return keyslotJSON{}, nil, err
	}
	kdf := kdfJSON{Type: spec.KDF.Type, Salt: base64.StdEncoding.EncodeToString(salt)}
	if spec.KDF.Type == KDFPBKDF2 {
		kdf.Hash, kdf.Iterations = "sha256", uint64(spec.KDF.Iterations)
	} else {
		kdf.Time, kdf.Memory, kdf.CPUs = uint64(spec.KDF.Time), uint64(spec.KDF.MemoryKiB), uint64(spec.KDF.Threads)
	}
	areaKey, err := deriveKey(kdf, spec.Passphrase, keyLen, defaultLimits())
	if err != nil {
		return keyslotJSON{}, nil, err
	}
	defer clear(areaKey)
	split, err := afSplit(p.volumeKey, stripes, sha256.New, p.rnd)
	if err != nil {
		return keyslotJSON{}, nil, err
	}
	material := make([]byte, afSectors(keyLen))
	copy(material, split)
	clear(split)
	if err := cryptArea(areaKey, material, true); err != nil {
		return keyslotJSON{}, nil, err
	}
	return keyslotJSON{
		Type:    "luks2",
		KeySize: keyLen,
		AF:      afJSON{Type: "luks1", Stripes: stripes, Hash: "sha256"},
		Area: areaJSON{
			Type:       "raw",
			Offset:     strconv.FormatInt(off, 10),
			Size:       strconv.FormatInt(size, 10),
			Encryption: Cipher,
			KeySize:    keyLen,
		},
		KDF: kdf,
	}, material, nil
}

func (p *plan) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(p.rnd, b); err != nil {
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	return b, nil
}

// write puts the header region on w: random filler over the whole keyslots
// area with the keyslot material in place, the secondary copy, and the
// primary copy last, so that an interrupted write leaves no primary header
// behind.
func (p *plan) write(w io.WriterAt) error {
	if err := p.newFiller(); err != nil {
		return err
	}
	buf := make([]byte, encryptChunk)
	for off := 2 * p.hdrSize; off < p.dataOffset; off += encryptChunk {
		b := buf[:min(encryptChunk, p.dataOffset-off)]
		p.keyslotsArea(b, off)
		if _, err := w.WriteAt(b, off); err != nil {
			return fmt.Errorf("writing keyslots area: %w", err)
		}
	}
	return p.writeHeaders(w)
}

// newFiller keys the keyslots area filler with 32 bytes from p.rnd.
//
// The filler (16 MiB by default) only has to be indistinguishable from the
// encrypted keyslot material, not secret: it is the AES-256-CTR keystream
// under that key, a cryptographically strong generator several times faster
// than reading it all from the system (and than ChaCha8), and seekable, so
// EncryptImage's workers write it in parallel with the data.
func (p *plan) newFiller() error {
	var seed [32]byte
	if _, err := io.ReadFull(p.rnd, seed[:]); err != nil {
		return fmt.Errorf("reading keyslots area filler seed: %w", err)
	}
	defer clear(seed[:])
	b, err := aes.NewCipher(seed[:])
	if err != nil {
		return fmt.Errorf("keying keyslots area filler: %w", err)
	}
	p.filler = b
	return nil
}

// keyslotsArea fills b with the bytes of the keyslots area at device offset
// off (2*hdrSize <= off, off+len(b) <= dataOffset, off-2*hdrSize a multiple of
// the AES block): the filler keystream at that position, overwritten by the
// keyslot material that falls in it. newFiller must have run.
func (p *plan) keyslotsArea(b []byte, off int64) {
	pos := uint64(off-2*p.hdrSize) / aes.BlockSize
	var iv [aes.BlockSize]byte
	binary.BigEndian.PutUint64(iv[8:], pos)
	clear(b)
	cipher.NewCTR(p.filler, iv[:]).XORKeyStream(b, b)
	end := off + int64(len(b))
	for _, a := range p.areas {
		if lo, hi := max(off, a.offset), min(end, a.offset+int64(len(a.material))); lo < hi {
			copy(b[lo-off:hi-off], a.material[lo-a.offset:hi-a.offset])
		}
	}
}

// writeHeaders writes the secondary header copy, then the primary.
func (p *plan) writeHeaders(w io.WriterAt) error {
	for _, c := range []struct {
		magic  string
		offset int64
		salt   []byte
	}{
		{magicSecondary, p.hdrSize, p.headerSalts[1]},
		{magicPrimary, 0, p.headerSalts[0]},
	} {
		b := encodeCopy(p.hdrSize, c.magic, 1, p.label, p.subsystem, p.uuid, c.salt, c.offset, p.meta)
		if _, err := w.WriteAt(b, c.offset); err != nil {
			return fmt.Errorf("writing LUKS2 header at %d: %w", c.offset, err)
		}
	}
	return nil
}

// header hands the volume key over to a Header.
func (p *plan) header() *Header {
	h := &Header{
		UUID:       p.uuid,
		Label:      p.label,
		Subsystem:  p.subsystem,
		DataOffset: p.dataOffset,
		SectorSize: p.sectorSize,
		Cipher:     Cipher,
		Keyslot:    -1,
		volumeKey:  p.volumeKey,
	}
	for i := range p.areas {
		h.Keyslots = append(h.Keyslots, i)
	}
	p.volumeKey = nil
	return h
}

func (p *plan) wipe() {
	clear(p.volumeKey)
	p.volumeKey = nil
}

// NewUUID returns a random version-4 UUID in canonical form, read from rnd
// (nil: crypto/rand). The agent uses it to fix a temp disk's UUID, from which
// its key is derived, before formatting it with Options.UUID.
func NewUUID(rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	return randomUUID(rnd)
}

// randomUUID returns a version-4 UUID read from rnd.
func randomUUID(rnd io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", fmt.Errorf("generating UUID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range []byte(s) {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
