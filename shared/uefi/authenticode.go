package uefi

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
)

// AuthenticodeDigest returns the Authenticode digest of a PE/COFF image
// with hash h, computed as the Microsoft Authenticode PE specification
// and EDK2's DxeImageVerificationLib do (this is the digest OVMF measures
// into PCR 4 and checks against the signature): the headers without
// CheckSum and the Certificate Table directory entry, then each section's
// raw data in PointerToRawData order, then any data after the sections
// that is not the attribute certificate table.
func AuthenticodeDigest(pe []byte, h crypto.Hash) ([]byte, error) {
	if !h.Available() {
		return nil, fmt.Errorf("computing the Authenticode digest: hash %v not available", h)
	}
	f, err := parsePE(pe)
	if err != nil {
		return nil, fmt.Errorf("computing the Authenticode digest: %w", err)
	}
	d := h.New()
	if f.certDirOff == 0 {
		d.Write(pe[:f.checksumOff])
		d.Write(pe[f.checksumOff+4 : f.sizeOfHeaders])
	} else {
		d.Write(pe[:f.checksumOff])
		d.Write(pe[f.checksumOff+4 : f.certDirOff])
		d.Write(pe[f.certDirOff+8 : f.sizeOfHeaders])
	}
	hashed := f.sizeOfHeaders
	for _, s := range f.sorted() {
		if s.rawSize == 0 {
			continue
		}
		d.Write(pe[s.rawOff : s.rawOff+s.rawSize])
		hashed += s.rawSize
	}
	// The spec counts the bytes hashed (not the offset reached): with gaps
	// between sections the trailing data starts inside the last section.
	// EDK2 does the same, and that is what gets measured.
	switch {
	case f.size-f.certSize > hashed:
		d.Write(pe[hashed : f.size-f.certSize])
	case f.size-f.certSize < hashed:
		return nil, fmt.Errorf("computing the Authenticode digest: %d bytes hashed exceed the %d bytes before the certificate table: %w", hashed, f.size-f.certSize, ErrMalformed)
	}
	return d.Sum(nil), nil
}

const (
	winCertRevision2      = 0x0200
	winCertTypePKCSSigned = 0x0002
)

var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

// SignerCertificates returns every certificate carried in the PKCS#7
// SignedData of the image's attribute certificate table (WIN_CERTIFICATE
// revision 2.0, type PKCS_SIGNED_DATA), in order. It does not verify the
// signatures: the firmware does; this names the certificates for the
// prediction of PCR 7's authority event. An image without a certificate
// table yields no certificates and no error.
func SignerCertificates(pe []byte) ([]*x509.Certificate, error) {
	f, err := parsePE(pe)
	if err != nil {
		return nil, fmt.Errorf("reading signer certificates: %w", err)
	}
	table := pe[f.certOff : f.certOff+f.certSize]
	var certs []*x509.Certificate
	for off := 0; off < len(table); {
		rest := table[off:]
		if len(rest) < 8 {
			return nil, fmt.Errorf("reading WIN_CERTIFICATE at %d: %d bytes left: %w", off, len(rest), ErrMalformed)
		}
		length := int(binary.LittleEndian.Uint32(rest))
		rev := binary.LittleEndian.Uint16(rest[4:])
		typ := binary.LittleEndian.Uint16(rest[6:])
		if length < 8 || length > len(rest) {
			return nil, fmt.Errorf("reading WIN_CERTIFICATE at %d: length %d out of range: %w", off, length, ErrMalformed)
		}
		if rev != winCertRevision2 || typ != winCertTypePKCSSigned {
			return nil, fmt.Errorf("reading WIN_CERTIFICATE at %d: revision %#x type %#x, want 0x200 and PKCS_SIGNED_DATA: %w", off, rev, typ, ErrMalformed)
		}
		cs, err := pkcs7Certificates(rest[8:length])
		if err != nil {
			return nil, fmt.Errorf("reading WIN_CERTIFICATE at %d: %w", off, err)
		}
		certs = append(certs, cs...)
		off += (length + 7) &^ 7
	}
	return certs, nil
}

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

type signedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	ContentInfo      asn1.RawValue
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      asn1.RawValue
}

// pkcs7Certificates returns the certificates of a DER PKCS#7 ContentInfo
// holding SignedData (RFC 2315 §9.1). Trailing bytes after the DER (the
// WIN_CERTIFICATE padding) are allowed.
func pkcs7Certificates(der []byte) ([]*x509.Certificate, error) {
	var ci contentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, fmt.Errorf("parsing PKCS#7 ContentInfo: %v: %w", err, ErrMalformed)
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("parsing PKCS#7 ContentInfo: content type %v is not signedData: %w", ci.ContentType, ErrMalformed)
	}
	var sd signedData
	rest, err := asn1.Unmarshal(ci.Content.Bytes, &sd)
	if err != nil {
		return nil, fmt.Errorf("parsing PKCS#7 SignedData: %v: %w", err, ErrMalformed)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("parsing PKCS#7 SignedData: %d trailing bytes: %w", len(rest), ErrMalformed)
	}
	var certs []*x509.Certificate
	for b := sd.Certificates.Bytes; len(b) > 0; {
		var raw asn1.RawValue
		next, err := asn1.Unmarshal(b, &raw)
		if err != nil {
			return nil, fmt.Errorf("parsing PKCS#7 certificates: %v: %w", err, ErrMalformed)
		}
		c, err := x509.ParseCertificate(raw.FullBytes)
		if err != nil {
			return nil, fmt.Errorf("parsing PKCS#7 certificate %d: %v: %w", len(certs), err, ErrMalformed)
		}
		certs = append(certs, c)
		b = next
	}
	return certs, nil
}
