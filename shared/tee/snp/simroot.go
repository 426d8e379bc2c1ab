package snp

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// ParseSimRoot parses the simulated ARK as written by sim.Signer.RootPEM
// (the verifier's simulated-root file): exactly one PEM CERTIFICATE, a
// self-signed CA.
func ParseSimRoot(pemBytes []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: parsing simulated root: want exactly one PEM CERTIFICATE", ErrMalformed)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing simulated root: %w", ErrMalformed, err)
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		return nil, fmt.Errorf("%w: parsing simulated root: not a CA certificate", ErrMalformed)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		return nil, fmt.Errorf("%w: parsing simulated root: not self-signed: %w", ErrMalformed, err)
	}
	return c, nil
}
