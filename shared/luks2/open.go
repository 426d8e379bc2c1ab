package luks2

import (
	"cmp"
	"crypto/pbkdf2"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Open reads the LUKS2 header on r (written here or by cryptsetup; the
// primary copy, or the secondary when the primary does not verify) and
// recovers the volume key with passphrase, trying the keyslots in
// cryptsetup's order (priority high before normal, "ignore" skipped, then by
// number). A key counts only when it matches the volume key digest of the
// data segment.
//
// It returns the volume key and the header, whose VolumeKey is the same
// slice; the caller zeroes it. Errors wrap ErrNotLUKS2, ErrCorruptHeader,
// ErrWrongPassphrase or ErrUnsupported (no keyslot uses pbkdf2 or argon2
// with aes-xts-plain64).
//
// The KDF costs come from the header: a hostile header can demand up to
// cryptsetup's own bounds (4 GiB of argon2 memory, 2^32-1 passes or
// iterations).
func Open(r io.ReaderAt, passphrase []byte) (volumeKey []byte, hdr *Header, err error) {
	return openWith(r, passphrase, defaultLimits())
}

// OpenKeyslot is Open restricted to keyslot id: no other keyslot is tried,
// whatever the priorities, so a wrong passphrase costs one KDF (never, say,
// the argon2 of a recovery keyslot). A header without that keyslot fails
// with ErrUnsupported.
func OpenKeyslot(r io.ReaderAt, passphrase []byte, id int) (volumeKey []byte, hdr *Header, err error) {
	return openSlotWith(r, passphrase, id, defaultLimits())
}

func openSlotWith(r io.ReaderAt, passphrase []byte, id int, lim limits) ([]byte, *Header, error) {
	c, err := readHeader(r)
	if err != nil {
		return nil, nil, err
	}
	hdr, err := c.describe()
	if err != nil {
		return nil, nil, err
	}
	if _, ok := c.meta.Keyslots[strconv.Itoa(id)]; !ok {
		return nil, nil, fmt.Errorf("%w: no keyslot %d", ErrUnsupported, id)
	}
	key, err := c.meta.unlock(r, id, passphrase, lim)
	if err != nil {
		if errors.Is(err, ErrWrongPassphrase) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("keyslot %d: %w", id, err)
	}
	hdr.Keyslot = id
	hdr.volumeKey = key
	return key, hdr, nil
}

// IsLUKS2 reports whether r holds a LUKS2 header (either copy verifying) and
// its UUID. A device without any LUKS2 magic (blank, another format, LUKS1)
// yields false and no error; one with a magic but no copy that verifies
// yields an error wrapping ErrCorruptHeader. It runs no KDF.
func IsLUKS2(r io.ReaderAt) (bool, string, error) {
	h, err := readHeader(r)
	switch {
	case errors.Is(err, ErrNotLUKS2):
		return false, "", nil
	case err != nil:
		return false, "", err
	}
	return true, h.uuid, nil
}

func openWith(r io.ReaderAt, passphrase []byte, lim limits) ([]byte, *Header, error) {
	c, err := readHeader(r)
	if err != nil {
		return nil, nil, err
	}
	hdr, err := c.describe()
	if err != nil {
		return nil, nil, err
	}
	var unusable []error
	tried := false
	for _, id := range c.meta.unlockOrder() {
		key, err := c.meta.unlock(r, id, passphrase, lim)
		switch {
		case err == nil:
			hdr.Keyslot = id
			hdr.volumeKey = key
			return key, hdr, nil
		case errors.Is(err, ErrWrongPassphrase):
			tried = true
		default:
			// One broken or foreign keyslot must not hide the others.
			unusable = append(unusable, fmt.Errorf("keyslot %d: %w", id, err))
		}
	}
	switch {
	case len(unusable) == 0:
		return nil, nil, ErrWrongPassphrase
	case tried:
		return nil, nil, fmt.Errorf("%w (other keyslots unusable: %v)", ErrWrongPassphrase, errors.Join(unusable...))
	}
	return nil, nil, fmt.Errorf("opening LUKS2 volume: %w", errors.Join(unusable...))
}

// describe turns the verified copy into a Header (without a key), checking
// that segment 0 is a plain crypt segment.
func (c *headerCopy) describe() (*Header, error) {
	req := c.meta.Config.Requirements
	if req != nil && len(req.Mandatory) > 0 {
		return nil, fmt.Errorf("%w: mandatory requirements %v", ErrUnsupported, req.Mandatory)
	}
	seg, ok := c.meta.Segments["0"]
	if !ok || seg.Type != "crypt" {
		return nil, fmt.Errorf("%w: segment 0 is not a crypt segment", ErrUnsupported)
	}
	if len(seg.Integrity) > 0 || len(seg.Flags) > 0 || len(c.meta.Segments) != 1 {
		return nil, fmt.Errorf("%w: integrity, segment flags or more than one segment", ErrUnsupported)
	}
	if seg.IVTweak != "0" {
		return nil, fmt.Errorf("%w: iv_tweak %q", ErrUnsupported, seg.IVTweak)
	}
	if !validSectorSize(seg.SectorSize) {
		return nil, fmt.Errorf("%w: segment sector size %d", ErrCorruptHeader, seg.SectorSize)
	}
	off, err := parseUint(seg.Offset)
	if err != nil || off > 1<<62 {
		return nil, fmt.Errorf("%w: segment offset %q", ErrCorruptHeader, seg.Offset)
	}
	var size uint64
	if seg.Size != "dynamic" {
		size, err = parseUint(seg.Size)
		if err != nil || size == 0 || size > 1<<62 || size%uint64(seg.SectorSize) != 0 {
			return nil, fmt.Errorf("%w: segment size %q is not a positive multiple of its %d-byte sector", ErrCorruptHeader, seg.Size, seg.SectorSize)
		}
	}
	h := &Header{
		UUID:       c.uuid,
		Label:      c.label,
		Subsystem:  c.subsystem,
		DataOffset: int64(off),
		DataSize:   int64(size),
		SectorSize: seg.SectorSize,
		Cipher:     seg.Encryption,
		Keyslot:    -1,
	}
	for id := range c.meta.Keyslots {
		n, _ := strconv.Atoi(id) // validated numeric and small
		h.Keyslots = append(h.Keyslots, n)
	}
	slices.Sort(h.Keyslots)
	return h, nil
}

// unlockOrder lists keyslot ids as cryptsetup tries them: priority 2 (high)
// first, then 1 or unset (normal); 0 (ignore) never; ties by number.
func (m *metadata) unlockOrder() []int {
	type slot struct{ id, prio int }
	var slots []slot
	for k, ks := range m.Keyslots {
		id, _ := strconv.Atoi(k)
		prio := 1
		if ks.Priority != nil {
			prio = *ks.Priority
		}
		if prio <= 0 {
			continue
		}
		slots = append(slots, slot{id, min(prio, 2)})
	}
	slices.SortFunc(slots, func(a, b slot) int {
		return cmp.Or(cmp.Compare(b.prio, a.prio), cmp.Compare(a.id, b.id))
	})
	ids := make([]int, len(slots))
	for i, s := range slots {
		ids[i] = s.id
	}
	return ids
}

// unlock recovers the volume key from keyslot id. It returns
// ErrWrongPassphrase when the recovered key does not match the digest.
func (m *metadata) unlock(r io.ReaderAt, id int, passphrase []byte, lim limits) ([]byte, error) {
	sid := strconv.Itoa(id)
	ks := m.Keyslots[sid]
	dg, ok := m.digestFor(sid)
	if !ok {
		return nil, fmt.Errorf("%w: no digest binds keyslot %d to segment 0", ErrUnsupported, id)
	}
	switch {
	case ks.Type != "luks2":
		return nil, fmt.Errorf("%w: keyslot type %q", ErrUnsupported, ks.Type)
	case ks.AF.Type != "luks1" || ks.AF.Stripes != stripes:
		return nil, fmt.Errorf("%w: anti-forensic split %q with %d stripes", ErrUnsupported, ks.AF.Type, ks.AF.Stripes)
	case ks.Area.Type != "raw" || ks.Area.Encryption != Cipher:
		return nil, fmt.Errorf("%w: keyslot area %q encrypted with %q", ErrUnsupported, ks.Area.Type, ks.Area.Encryption)
	case ks.Area.KeySize != 32 && ks.Area.KeySize != 64:
		return nil, fmt.Errorf("%w: keyslot area key size %d", ErrUnsupported, ks.Area.KeySize)
	case ks.KeySize < 1 || ks.KeySize > maxVolumeKeySize:
		return nil, fmt.Errorf("%w: keyslot key size %d", ErrCorruptHeader, ks.KeySize)
	}
	afHash, ok := hashByName(ks.AF.Hash)
	if !ok {
		return nil, fmt.Errorf("%w: anti-forensic hash %q", ErrUnsupported, ks.AF.Hash)
	}
	off, err := parseUint(ks.Area.Offset)
	if err != nil || off%keyslotSector != 0 || off > 1<<62 {
		return nil, fmt.Errorf("%w: keyslot area offset %q", ErrCorruptHeader, ks.Area.Offset)
	}
	size, err := parseUint(ks.Area.Size)
	n := afSectors(ks.KeySize)
	if err != nil || size < uint64(n) {
		return nil, fmt.Errorf("%w: keyslot area size %q below %d", ErrCorruptHeader, ks.Area.Size, n)
	}

	areaKey, err := deriveKey(ks.KDF, passphrase, ks.Area.KeySize, lim)
	if err != nil {
		return nil, err
	}
	defer clear(areaKey)
	material := make([]byte, n)
	defer clear(material)
	if k, err := r.ReadAt(material, int64(off)); k < n {
		return nil, fmt.Errorf("reading keyslot area at %d: %w", off, cmp.Or(err, io.ErrUnexpectedEOF))
	}
	if err := cryptArea(areaKey, material, false); err != nil {
		return nil, err
	}
	key := afMerge(material, ks.KeySize, stripes, afHash)
	if err := dg.verify(key, lim); err != nil {
		clear(key)
		return nil, err
	}
	return key, nil
}

// digestFor returns the digest that binds keyslot sid to segment 0.
func (m *metadata) digestFor(sid string) (digestJSON, bool) {
	for _, d := range m.Digests {
		if slices.Contains(d.Keyslots, sid) && slices.Contains(d.Segments, "0") {
			return d, true
		}
	}
	return digestJSON{}, false
}

// verify checks key against the pbkdf2 digest in constant time.
func (d digestJSON) verify(key []byte, lim limits) error {
	if d.Type != "pbkdf2" {
		return fmt.Errorf("%w: digest type %q", ErrUnsupported, d.Type)
	}
	h, ok := hashByName(d.Hash)
	if !ok {
		return fmt.Errorf("%w: digest hash %q", ErrUnsupported, d.Hash)
	}
	if d.Iterations < 1 || d.Iterations > lim.maxIterations {
		return fmt.Errorf("%w: digest iterations %d outside [1, %d]", ErrCorruptHeader, d.Iterations, lim.maxIterations)
	}
	salt, err := decodeSalt(d.Salt)
	if err != nil {
		return fmt.Errorf("digest salt: %w", err)
	}
	want, err := base64.StdEncoding.DecodeString(d.Digest)
	if err != nil || len(want) < 16 || len(want) > 64 {
		return fmt.Errorf("%w: digest value of unusable length", ErrCorruptHeader)
	}
	got, err := pbkdf2.Key(h, string(key), salt, int(d.Iterations), len(want))
	if err != nil {
		return fmt.Errorf("computing volume key digest: %w", err)
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrWrongPassphrase
	}
	return nil
}
