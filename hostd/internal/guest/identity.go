package guest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/confidant-cvm/confidant/hostd/internal/spec"
)

// A guest's identity is a random UUID made at `vm create` and kept in its
// directory (idFile) for as long as the guest exists: it survives guest
// reboots, stops and hostd restarts, and a guest created again under the
// same name after a delete gets a new one. hostd launches the guest with a
// digest of it in the field the TEE reserves for the host's data, which the
// hardware (or the simulated secure processor) puts into every report and
// the verifier into the token's sub:
//
//	HOST_DATA  (sev-snp, sim) = SHA-256(identityDomain || UUID)   32 bytes
//	MRCONFIGID (tdx)          = SHA-384(identityDomain || UUID)   48 bytes
//
// with UUID in its canonical lower-case text form. An explicit
// snp.host_data in the spec replaces the derived HOST_DATA.
const identityDomain = "confidant-hostd guest identity v1\x00"

// idFile holds the guest's UUID.
const idFile = "id"

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// newGuestID returns a random (version 4) UUID.
func newGuestID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making guest identity: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// writeGuestID stores id in dir, never replacing an existing one.
func writeGuestID(dir, id string) error {
	f, err := os.OpenFile(filepath.Join(dir, idFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing guest identity: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing guest identity: %w", err)
	}
	return nil
}

// readGuestID reads the guest's UUID; a guest made before identities
// existed gets one now, kept from then on.
func readGuestID(dir string) (id string, created bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, idFile))
	if errors.Is(err, os.ErrNotExist) {
		if id, err = newGuestID(); err != nil {
			return "", false, err
		}
		if err := writeGuestID(dir, id); err != nil {
			return "", false, err
		}
		return id, true, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading guest identity: %w", err)
	}
	id = strings.TrimSpace(string(b))
	if !uuidRE.MatchString(id) {
		return "", false, fmt.Errorf("reading guest identity: %s holds no UUID", filepath.Join(dir, idFile))
	}
	return id, false, nil
}

// Identity is what a guest is launched with to tell it apart from every
// other guest of the same image.
type Identity struct {
	// ID is the guest's UUID, made at create.
	ID string `json:"id"`
	// HostData is HOST_DATA (hex, 32 bytes) for sev-snp and sim guests.
	HostData string `json:"host_data,omitempty"`
	// MRConfigID is MRCONFIGID (hex, 48 bytes) for tdx guests.
	MRConfigID string `json:"mrconfigid,omitempty"`
}

// identityOf returns the identity fields of a guest with UUID id and spec
// sp.
func identityOf(id string, sp *spec.Spec) Identity {
	out := Identity{ID: id}
	switch sp.TEE {
	case spec.TEETDX:
		m := mrConfigID(id, sp)
		out.MRConfigID = hex.EncodeToString(m[:])
	default:
		h := hostData(id, sp)
		out.HostData = hex.EncodeToString(h[:])
	}
	return out
}

// hostData is the HOST_DATA a sev-snp or sim guest is launched with: the
// spec's snp.host_data when set, else the digest of its identity.
func hostData(id string, sp *spec.Spec) [32]byte {
	if sp.SNP.HostData != "" {
		return sp.HostData()
	}
	return sha256.Sum256([]byte(identityDomain + id))
}

// mrConfigID is the MRCONFIGID a tdx guest is launched with.
func mrConfigID(id string, _ *spec.Spec) [48]byte {
	return sha512.Sum384([]byte(identityDomain + id))
}
