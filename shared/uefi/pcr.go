package uefi

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The strings and bytes OVMF measures around the boot application
// (EDK2 MdePkg/Include/Guid/EventGroup.h, Tcg2Dxe).
const (
	actionCallingBootOption = "Calling EFI Application from Boot Option"
	// pcrKernelImage is systemd-stub's PCR for the UKI's sections.
	pcrKernelImage = 11
)

// stubSections are the UKI sections systemd-stub (252) measures into
// PCR 11, in its order. .pcrsig is not measured: it holds signatures over
// the result (systemd-stub(7)).
var stubSections = []string{".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"}

// ErrNotAuthorized is returned by PredictOS when Secure Boot is on and no
// db entry authorizes the UKI (or dbx revokes it): the firmware would
// refuse to start it, so there is no boot to predict.
var ErrNotAuthorized = errors.New("image not authorized by db")

// PredictOS predicts the events that booting uki with variable store vars
// extends into PCRs 4, 7 and 11 under OVMF and systemd-stub, in log
// order:
//   - PCR 7: SecureBoot (01 when vars enables Secure Boot, else 00), PK,
//     KEK, db and dbx as EV_EFI_VARIABLE_DRIVER_CONFIG (a missing
//     variable measured with no data), a separator, and, with Secure Boot
//     on, one EV_EFI_VARIABLE_AUTHORITY naming the first X.509 db entry
//     that is one of the UKI's signer certificates or issued one of them;
//   - PCR 4: the EV_EFI_ACTION "Calling EFI Application from Boot
//     Option", a separator, and the UKI's Authenticode SHA-256 digest as
//     EV_EFI_BOOT_SERVICES_APPLICATION (its data, which holds load
//     addresses, is left empty);
//   - PCR 11: for each of the stub's sections present, the digest of its
//     ASCII name with a NUL, then the digest of its VirtualSize bytes.
//
// With Secure Boot on, an unsigned UKI, one no db certificate authorizes,
// or one dbx revokes is an error wrapping ErrNotAuthorized.
func PredictOS(uki []byte, vars *VarStore) ([]Event, error) {
	if vars == nil {
		return nil, fmt.Errorf("predicting the boot: no variable store")
	}
	digest, err := AuthenticodeDigest(uki, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("predicting the boot: %w", err)
	}
	on := vars.SecureBootEnabled()
	var authority []byte
	if on {
		if authority, err = authorize(uki, digest, vars); err != nil {
			return nil, fmt.Errorf("predicting the boot with Secure Boot on: %w", err)
		}
	}
	events := secureBootConfig(vars, on)
	events = append(events, separator(7), action(4, actionCallingBootOption), separator(4))
	if on {
		events = append(events, Event{
			PCR: 7, Type: EvEFIVariableAuthority, Data: authority,
			Digest: sha256Of(authority), Desc: eventTypeName(EvEFIVariableAuthority) + " " + VarDB,
		})
	}
	events = append(events, Event{
		PCR: 4, Type: EvEFIBootServicesApplication, Digest: digest,
		Desc: eventTypeName(EvEFIBootServicesApplication),
	})
	stub, err := stubEvents(uki)
	if err != nil {
		return nil, fmt.Errorf("predicting the boot: %w", err)
	}
	return append(events, stub...), nil
}

// secureBootConfig returns PCR 7's EV_EFI_VARIABLE_DRIVER_CONFIG events.
func secureBootConfig(vars *VarStore, on bool) []Event {
	sb := []byte{0}
	if on {
		sb[0] = 1
	}
	events := []Event{variableEvent(7, EvEFIVariableDriverConfig, VarSecureBoot, GlobalVariableGUID, sb)}
	for _, n := range []struct {
		name string
		g    GUID
	}{{VarPK, GlobalVariableGUID}, {VarKEK, GlobalVariableGUID}, {VarDB, ImageSecurityDatabaseGUID}, {VarDBX, ImageSecurityDatabaseGUID}} {
		v, _ := vars.Get(n.name, n.g)
		events = append(events, variableEvent(7, EvEFIVariableDriverConfig, n.name, n.g, v.Data))
	}
	return events
}

// authorize returns the UEFI_VARIABLE_DATA of the db entry that lets the
// firmware start the image, after checking dbx does not revoke it.
func authorize(uki, digest []byte, vars *VarStore) ([]byte, error) {
	signers, err := SignerCertificates(uki)
	if err != nil {
		return nil, err
	}
	if len(signers) == 0 {
		return nil, fmt.Errorf("the UKI is not signed: %w", ErrNotAuthorized)
	}
	dbx, _ := vars.Get(VarDBX, ImageSecurityDatabaseGUID)
	revoked, err := ParseSignatureLists(dbx.Data)
	if err != nil {
		return nil, fmt.Errorf("reading dbx: %w", err)
	}
	for _, l := range revoked {
		for _, e := range l.Entries {
			switch {
			case l.Type == CertSHA256GUID && bytes.Equal(e.Data, digest):
				return nil, fmt.Errorf("dbx revokes the UKI's digest: %w", ErrNotAuthorized)
			case l.Type == CertX509GUID && authorizes(e.Data, signers):
				return nil, fmt.Errorf("dbx revokes a certificate of the UKI's signature: %w", ErrNotAuthorized)
			}
		}
	}
	db, _ := vars.Get(VarDB, ImageSecurityDatabaseGUID)
	allowed, err := ParseSignatureLists(db.Data)
	if err != nil {
		return nil, fmt.Errorf("reading db: %w", err)
	}
	for _, l := range allowed {
		if l.Type != CertX509GUID {
			continue
		}
		for _, e := range l.Entries {
			if authorizes(e.Data, signers) {
				sig := append(append([]byte(nil), e.Owner[:]...), e.Data...)
				return variableData(VarDB, ImageSecurityDatabaseGUID, sig), nil
			}
		}
	}
	return nil, fmt.Errorf("no X.509 certificate in db signed the UKI (signer %q): %w", signers[0].Subject, ErrNotAuthorized)
}

// authorizes reports whether der is one of signers or issued one of them.
func authorizes(der []byte, signers []*x509.Certificate) bool {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return false
	}
	for _, s := range signers {
		if c.Equal(s) || (bytes.Equal(s.RawIssuer, c.RawSubject) && s.CheckSignatureFrom(c) == nil) {
			return true
		}
	}
	return false
}

// stubEvents returns systemd-stub's PCR 11 events for uki.
func stubEvents(uki []byte) ([]Event, error) {
	f, err := parsePE(uki)
	if err != nil {
		return nil, err
	}
	if _, ok := f.section(".linux"); !ok {
		return nil, fmt.Errorf("the UKI has no .linux section: %w", ErrMalformed)
	}
	var events []Event
	for _, name := range stubSections {
		s, ok := f.section(name)
		if !ok || s.virtualSize == 0 {
			continue
		}
		label := encodeName(name, true)
		events = append(events,
			Event{PCR: pcrKernelImage, Type: EvIPL, Digest: sha256Of(append([]byte(name), 0)), Data: label, Desc: "EV_IPL " + name},
			Event{PCR: pcrKernelImage, Type: EvIPL, Digest: sectionDigest(uki, s), Data: bytes.Clone(label), Desc: "EV_IPL " + name})
	}
	return events, nil
}

// sectionDigest hashes a section as the loader lays it out: VirtualSize
// bytes, the raw data zero-filled past SizeOfRawData.
func sectionDigest(pe []byte, s peSection) []byte {
	h := sha256.New()
	n := min(s.virtualSize, s.rawSize)
	h.Write(pe[s.rawOff : s.rawOff+n])
	if pad := int64(s.virtualSize - n); pad > 0 {
		_, _ = io.CopyN(h, zeroReader{}, pad)
	}
	return h.Sum(nil)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// variableData encodes UEFI_VARIABLE_DATA (TCG PC Client PFP spec
// §10.4.2): the GUID, the name's length in characters, the data's
// length, the name in UTF-16 without NUL, the data.
func variableData(name string, g GUID, data []byte) []byte {
	n := encodeName(name, false)
	b := append([]byte(nil), g[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(n)/2))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	return append(append(b, n...), data...)
}

func variableEvent(pcr int, typ uint32, name string, g GUID, data []byte) Event {
	d := variableData(name, g, data)
	return Event{PCR: pcr, Type: typ, Digest: sha256Of(d), Data: d, Desc: eventTypeName(typ) + " " + name}
}

func separator(pcr int) Event {
	d := []byte{0, 0, 0, 0}
	return Event{PCR: pcr, Type: EvSeparator, Digest: sha256Of(d), Data: d, Desc: eventTypeName(EvSeparator)}
}

func action(pcr int, text string) Event {
	return Event{PCR: pcr, Type: EvEFIAction, Digest: sha256Of([]byte(text)), Data: []byte(text),
		Desc: eventTypeName(EvEFIAction) + " " + text}
}

func sha256Of(b []byte) []byte {
	d := sha256.Sum256(b)
	return d[:]
}
