package sim

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

func amdName(cn string, serial *big.Int) pkix.Name {
	return pkix.Name{
		Country:            []string{"US"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		Organization:       []string{"Advanced Micro Devices"},
		OrganizationalUnit: []string{"Engineering"},
		CommonName:         cn,
		SerialNumber:       fmt.Sprintf("%x", serial),
	}
}

func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

func arkTemplate(now time.Time) *x509.Certificate {
	sn := serial()
	return &x509.Certificate{
		Version:               3,
		SerialNumber:          sn,
		Subject:               amdName("ARK-"+productLine, sn),
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(rootYears, 0, 0),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		CRLDistributionPoints: []string{kds.CrlLinkByRole(productLine, "ARK")},
	}
}

func askTemplate(now time.Time) *x509.Certificate {
	sn := serial()
	return &x509.Certificate{
		Version:               3,
		SerialNumber:          sn,
		Subject:               amdName("SEV-"+productLine, sn),
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(rootYears, 0, 0),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		CRLDistributionPoints: []string{kds.CrlLinkByRole(productLine, "ASK")},
	}
}

// vcekTemplate carries the KDS extensions: struct version, product name,
// the TCB security patch levels and the HWID.
func vcekTemplate(now time.Time, tcb kds.TCBParts, hwid [abi.ChipIDSize]byte) (*x509.Certificate, error) {
	var exts []pkix.Extension
	add := func(oid asn1.ObjectIdentifier, v any, params string) error {
		der, err := asn1.MarshalWithParams(v, params)
		if err != nil {
			return err
		}
		exts = append(exts, pkix.Extension{Id: oid, Value: der})
		return nil
	}
	if err := errors.Join(
		add(kds.OidStructVersion, 0, ""),
		add(kds.OidProductName1, productName, "ia5"),
		add(kds.OidBlSpl, int(tcb.BlSpl), ""),
		add(kds.OidTeeSpl, int(tcb.TeeSpl), ""),
		add(kds.OidSnpSpl, int(tcb.SnpSpl), ""),
		add(kds.OidSpl4, int(tcb.Spl4), ""),
		add(kds.OidSpl5, int(tcb.Spl5), ""),
		add(kds.OidSpl6, int(tcb.Spl6), ""),
		add(kds.OidSpl7, int(tcb.Spl7), ""),
		add(kds.OidUcodeSpl, int(tcb.UcodeSpl), ""),
		add(kds.OidHwid, hwid[:], ""),
	); err != nil {
		return nil, err
	}
	sn := serial()
	return &x509.Certificate{
		Version:            3,
		SerialNumber:       sn,
		Subject:            amdName("SEV-VCEK", sn),
		NotBefore:          now.Add(-24 * time.Hour),
		NotAfter:           now.AddDate(vcekYears, 0, 0),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		ExtraExtensions:    exts,
	}, nil
}

// certify signs template with signerKey; parent nil means self-signed.
func certify(template, parent *x509.Certificate, pub crypto.PublicKey, signerKey crypto.Signer) (*x509.Certificate, error) {
	if parent == nil {
		parent = template
		pub = signerKey.Public()
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, signerKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
