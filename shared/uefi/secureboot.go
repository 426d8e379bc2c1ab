package uefi

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
)

// Names of the Secure Boot variables (UEFI 2.10 §3.3, §32.6.3.3) and
// OVMF's switch.
const (
	VarSecureBoot       = "SecureBoot"
	VarPK               = "PK"
	VarKEK              = "KEK"
	VarDB               = "db"
	VarDBX              = "dbx"
	VarSecureBootEnable = "SecureBootEnable"
)

// SecureBootEnabled reports what OVMF will put in SecureBoot at the next
// boot. EDK2's AuthVariableLib: the platform is in user mode when PK
// exists; then SecureBootEnable (created as 1 when missing) decides, and
// Secure Boot is on only when it reads SECURE_BOOT_ENABLE (1). In setup
// mode (no PK) Secure Boot is off whatever SecureBootEnable says.
func (s *VarStore) SecureBootEnabled() bool {
	if _, ok := s.Get(VarPK, GlobalVariableGUID); !ok {
		return false
	}
	v, ok := s.Get(VarSecureBootEnable, SecureBootEnableDisableGUID)
	if !ok {
		return true
	}
	return len(v.Data) > 0 && v.Data[0] == 1
}

// SetSecureBootEnable writes OVMF's SecureBootEnable variable
// (NV|BS, one byte): the switch a host holding the variable store can
// flip. It does not touch PK, so with on=true Secure Boot is on only when
// PK is enrolled.
func (s *VarStore) SetSecureBootEnable(on bool) error {
	b := byte(0)
	if on {
		b = 1
	}
	if err := s.Set(Variable{
		Name: VarSecureBootEnable, GUID: SecureBootEnableDisableGUID,
		Attributes: AttrNonVolatile | AttrBootServiceAccess, Data: []byte{b},
	}); err != nil {
		return fmt.Errorf("setting SecureBootEnable: %w", err)
	}
	return nil
}

// EnrollSecureBoot enrolls certificates the way OVMF's EnrollDefaultKeys
// application does (it made Debian's snakeoil store): PK holds pk with
// the signature owner gEfiGlobalVariableGuid; KEK and db hold kek and db
// owned by owner; dbx holds one placeholder entry, the SHA-256 of the
// empty string (revoking nothing), owned by owner. All four are
// time-based authenticated (NV|BS|RT|AT, 0x27). It also sets
// SecureBootEnable to 1, so the store boots with Secure Boot on. pk, kek
// and db must each hold at least one certificate.
func EnrollSecureBoot(s *VarStore, owner GUID, pk, kek, db []*x509.Certificate) error {
	for name, cs := range map[string][]*x509.Certificate{VarPK: pk, VarKEK: kek, VarDB: db} {
		if len(cs) == 0 {
			return fmt.Errorf("enrolling Secure Boot keys: no certificate for %s", name)
		}
		for _, c := range cs {
			if c == nil || len(c.Raw) == 0 {
				return fmt.Errorf("enrolling Secure Boot keys: empty certificate for %s", name)
			}
		}
	}
	empty := sha256.Sum256(nil)
	vars := []Variable{
		{Name: VarDB, GUID: ImageSecurityDatabaseGUID, Data: certList(owner, db)},
		{Name: VarDBX, GUID: ImageSecurityDatabaseGUID, Data: EncodeSignatureLists([]SignatureList{
			{Type: CertSHA256GUID, Entries: []SignatureData{{Owner: owner, Data: empty[:]}}},
		})},
		{Name: VarKEK, GUID: GlobalVariableGUID, Data: certList(owner, kek)},
		{Name: VarPK, GUID: GlobalVariableGUID, Data: certList(GlobalVariableGUID, pk)},
	}
	for _, v := range vars {
		v.Attributes = AttrsAuthenticated
		if err := s.Set(v); err != nil {
			return fmt.Errorf("enrolling Secure Boot keys: %w", err)
		}
	}
	if err := s.SetSecureBootEnable(true); err != nil {
		return fmt.Errorf("enrolling Secure Boot keys: %w", err)
	}
	return nil
}

// certList is one EFI_SIGNATURE_LIST per certificate (their sizes
// differ), all owned by owner.
func certList(owner GUID, certs []*x509.Certificate) []byte {
	ls := make([]SignatureList, len(certs))
	for i, c := range certs {
		ls[i] = SignatureList{Type: CertX509GUID, Entries: []SignatureData{{Owner: owner, Data: c.Raw}}}
	}
	return EncodeSignatureLists(ls)
}
