package uki

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrEncryptedKey means the signing key is encrypted: sbsign would stop
// and ask for its passphrase on the terminal.
var ErrEncryptedKey = errors.New("the Secure Boot signing key is encrypted")

// Debian's test-only Secure Boot pair (package ovmf): its certificate is in
// OVMF_VARS_4M.snakeoil.fd as PK, KEK and db. The key's passphrase is
// "snakeoil". Never for production.
const (
	SnakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	SnakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
)

// maxPEM caps what is read of a key or certificate file.
const maxPEM = 1 << 20

// ReadSigner checks a Secure Boot signing pair as sbsign takes it — an
// unencrypted PEM RSA private key (PKCS#1 or PKCS#8) and the PEM X.509
// certificate of its public key — and returns the certificate.
func ReadSigner(keyFile, certFile string) (*x509.Certificate, error) {
	cert, err := ReadCert(certFile)
	if err != nil {
		return nil, err
	}
	kb, err := readSmall(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the Secure Boot key: %w", err)
	}
	defer clear(kb)
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, fmt.Errorf("%w: the Secure Boot key %s is not PEM", ErrInput, keyFile)
	}
	defer clear(blk.Bytes)
	if strings.Contains(blk.Type, "ENCRYPTED") || strings.Contains(blk.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, fmt.Errorf("%w: %s: sbsign needs it unencrypted; decrypt a copy first, e.g. openssl pkey -in %s -out key.pem (kept private, outside the output) — Debian's test-only snakeoil key: openssl rsa -passin pass:snakeoil -in %s -out snakeoil.key",
			ErrEncryptedKey, keyFile, keyFile, SnakeoilKey)
	}
	var key crypto.Signer
	switch blk.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		var k any
		if k, err = x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
			var ok bool
			if key, ok = k.(*rsa.PrivateKey); !ok {
				err = fmt.Errorf("a %T, not RSA", k)
			}
		}
	default:
		err = fmt.Errorf("PEM type %q", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the Secure Boot key %s: want an unencrypted RSA private key (sbsign's): %v", ErrInput, keyFile, err)
	}
	pub, ok := key.Public().(*rsa.PublicKey)
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: the Secure Boot certificate %s is not the key %s's", ErrInput, certFile, keyFile)
	}
	return cert, nil
}

// ReadCert reads one PEM X.509 certificate.
func ReadCert(certFile string) (*x509.Certificate, error) {
	b, err := readSmall(certFile)
	if err != nil {
		return nil, fmt.Errorf("reading the Secure Boot certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s is not a PEM certificate", ErrInput, certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: the Secure Boot certificate %s: %v", ErrInput, certFile, err)
	}
	return cert, nil
}

func readSmall(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxPEM {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInput, path, maxPEM)
	}
	return os.ReadFile(path)
}

// Sign signs the EFI image in with sbsign (Authenticode, SHA-256) and
// writes the signed image to out (replacing it). It checks the pair with
// ReadSigner first.
func Sign(ctx context.Context, keyFile, certFile, in, out string) error {
	if _, err := ReadSigner(keyFile, certFile); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return fmt.Errorf("signing the UKI: %w", err)
	}
	tmp.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := run(ctx, nil, "sbsign", "--key", keyFile, "--cert", certFile, "--output", tmp.Name(), in); err != nil {
		return fmt.Errorf("signing the UKI: %w", err)
	}
	if err := place(tmp.Name(), out); err != nil {
		return err
	}
	ok = true
	return nil
}

// Verify checks file's Authenticode signature against certFile with
// sbverify --cert; an image not signed by that certificate is an error.
func Verify(ctx context.Context, certFile, file string) error {
	if _, err := run(ctx, nil, "sbverify", "--cert", certFile, file); err != nil {
		return fmt.Errorf("verifying the signature of %s: %w", file, err)
	}
	return nil
}
