package harness

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// SecureBootKey is an image builder's Secure Boot signing key and its
// certificate (PEM files). confidant-image build signs the UKI with the key
// and enrolls the certificate as PK, KEK and db in the image's UEFI variable
// store template: the production path, with a key made for this lab only.
type SecureBootKey struct {
	Key, Cert string
}

// MakeSecureBootKey writes a new RSA-2048 key and a self-signed certificate
// for it (valid for a day) into dir as secure-boot.key and secure-boot.pem.
// The key never leaves the lab's directory.
func MakeSecureBootKey(dir, name string) (SecureBootKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return SecureBootKey{}, fmt.Errorf("generating the Secure Boot key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return SecureBootKey{}, fmt.Errorf("generating a certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Confidant test lab (not for production)"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return SecureBootKey{}, fmt.Errorf("creating the Secure Boot certificate: %w", err)
	}
	k := SecureBootKey{Key: filepath.Join(dir, "secure-boot.key"), Cert: filepath.Join(dir, "secure-boot.pem")}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return SecureBootKey{}, fmt.Errorf("encoding the Secure Boot key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	if err := os.WriteFile(k.Key, keyPEM, 0o600); err != nil {
		return SecureBootKey{}, fmt.Errorf("writing the Secure Boot key: %w", err)
	}
	if err := os.WriteFile(k.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return SecureBootKey{}, fmt.Errorf("writing the Secure Boot certificate: %w", err)
	}
	return k, nil
}
