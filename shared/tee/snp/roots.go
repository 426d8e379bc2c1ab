package snp

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"

	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify/trust"
)

var productLines = []string{"Milan", "Genoa", "Turin"}

// trustedRoots returns the roots for verify.Options.TrustedRoots: the
// simulated ARK with the ASK/ASVK from the table, or AMD's embedded roots.
func trustedRoots(simRoot *x509.Certificate, chain *spb.CertificateChain) (map[string][]*trust.AMDRootCerts, error) {
	if simRoot == nil {
		return amdRoots()
	}
	if len(chain.GetAskCert()) == 0 {
		return nil, fmt.Errorf("%w: certificate table has no ASK for the simulated root", ErrChain)
	}
	ask, err := x509.ParseCertificate(chain.GetAskCert())
	if err != nil {
		return nil, fmt.Errorf("%w: parsing ASK: %w", ErrChain, err)
	}
	roots := make(map[string][]*trust.AMDRootCerts, len(productLines))
	for _, pl := range productLines {
		r := trust.AMDRootCertsProduct(pl)
		r.ProductCerts = &trust.ProductCerts{Ark: simRoot, Ask: ask}
		roots[pl] = []*trust.AMDRootCerts{r}
	}
	return roots, nil
}

// amdRoots parses AMD's embedded VCEK and VLEK product chains once. The
// result is never modified.
var amdRoots = sync.OnceValues(func() (map[string][]*trust.AMDRootCerts, error) {
	bundles := map[string][2][]byte{
		"Milan": {trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes},
		"Genoa": {trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes},
		"Turin": {trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes},
	}
	roots := make(map[string][]*trust.AMDRootCerts, len(bundles))
	for pl, b := range bundles {
		vcekChain, err := parsePEMCerts(b[0])
		if err != nil || len(vcekChain) != 2 {
			return nil, fmt.Errorf("%w: parsing embedded %s VCEK chain: %d certificates, %v", ErrChain, pl, len(vcekChain), err)
		}
		vlekChain, err := parsePEMCerts(b[1])
		if err != nil || len(vlekChain) != 2 {
			return nil, fmt.Errorf("%w: parsing embedded %s VLEK chain: %d certificates, %v", ErrChain, pl, len(vlekChain), err)
		}
		r := trust.AMDRootCertsProduct(pl)
		// KDS cert_chain bodies hold the ASK (or ASVK) first, then the ARK.
		r.ProductCerts = &trust.ProductCerts{Ark: vcekChain[1], Ask: vcekChain[0], Asvk: vlekChain[0]}
		roots[pl] = []*trust.AMDRootCerts{r}
	}
	return roots, nil
})

// parsePEMCerts parses every CERTIFICATE block in b.
func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
}
