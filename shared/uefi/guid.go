package uefi

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// GUID is an EFI_GUID in the byte order UEFI stores it: the first three
// fields little-endian, the last eight bytes as written.
type GUID [16]byte

// The GUIDs this package names (UEFI 2.10 §3.3, §32.4.1, §32.6.3.3).
var (
	// GlobalVariableGUID owns SecureBoot, PK, KEK, SetupMode and friends.
	GlobalVariableGUID = mustGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// ImageSecurityDatabaseGUID owns db and dbx.
	ImageSecurityDatabaseGUID = mustGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	// SecureBootEnableDisableGUID owns OVMF's SecureBootEnable variable.
	SecureBootEnableDisableGUID = mustGUID("f0a30bc7-af08-4556-99c4-001009c93a44")
	// CertX509GUID is EFI_CERT_X509_GUID: a signature list of DER certificates.
	CertX509GUID = mustGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// CertSHA256GUID is EFI_CERT_SHA256_GUID: a signature list of SHA-256 digests.
	CertSHA256GUID = mustGUID("c1c41626-504c-4092-aca9-41f936934328")
)

// authenticatedVariableGUID is gEfiAuthenticatedVariableGuid, the
// signature of a variable store holding AUTHENTICATED_VARIABLE_HEADERs.
var authenticatedVariableGUID = mustGUID("aaf32c78-947b-439a-a180-2e144ec37792")

// systemNVDataFVGUID is gEfiSystemNvDataFvGuid, the file system GUID of
// OVMF's variable firmware volume.
var systemNVDataFVGUID = mustGUID("fff12b8d-7696-4c8b-a985-2747075b4f50")

// ParseGUID parses the registry form "8be4df61-93ca-11d2-aa0d-00e098032b8c".
func ParseGUID(s string) (GUID, error) {
	var g GUID
	parts := strings.Split(s, "-")
	if len(s) != 36 || len(parts) != 5 || len(parts[0]) != 8 || len(parts[1]) != 4 ||
		len(parts[2]) != 4 || len(parts[3]) != 4 || len(parts[4]) != 12 {
		return g, fmt.Errorf("parsing GUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	raw, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		return g, fmt.Errorf("parsing GUID %q: %w", s, err)
	}
	binary.LittleEndian.PutUint32(g[0:4], binary.BigEndian.Uint32(raw[0:4]))
	binary.LittleEndian.PutUint16(g[4:6], binary.BigEndian.Uint16(raw[4:6]))
	binary.LittleEndian.PutUint16(g[6:8], binary.BigEndian.Uint16(raw[6:8]))
	copy(g[8:], raw[8:])
	return g, nil
}

// String returns the lower-case registry form.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}
