package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/uuid"
)

var allFiles = []string{ARKKeyFile, ASKKeyFile, VCEKKeyFile, ASKCertFile, VCEKCertFile, ARKCertFile}

// Create makes a new simulated chain and writes it to dir (created 0700 if
// missing). It fails if any of the files already exists.
func Create(dir string) (*Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating simulated SNP signer directory: %w", err)
	}
	for _, name := range allFiles {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("creating simulated SNP signer: %s: %w", name, fs.ErrExist)
		}
	}
	arkKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generating simulated ARK key: %w", err)
	}
	askKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generating simulated ASK key: %w", err)
	}
	vcekKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating simulated VCEK key: %w", err)
	}
	var chipID [abi.ChipIDSize]byte
	if _, err := rand.Read(chipID[:]); err != nil {
		return nil, fmt.Errorf("generating simulated chip ID: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	ark, err := certify(arkTemplate(now), nil, arkKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("creating simulated ARK: %w", err)
	}
	ask, err := certify(askTemplate(now), ark, &askKey.PublicKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("creating simulated ASK: %w", err)
	}
	vt, err := vcekTemplate(now, simTCB, chipID)
	if err != nil {
		return nil, fmt.Errorf("creating simulated VCEK: %w", err)
	}
	vcek, err := certify(vt, ask, &vcekKey.PublicKey, askKey)
	if err != nil {
		return nil, fmt.Errorf("creating simulated VCEK: %w", err)
	}
	// The ARK certificate is written last: its presence marks a complete
	// directory for LoadOrCreate.
	for _, f := range []struct {
		name string
		key  any
		cert *x509.Certificate
	}{
		{name: ARKKeyFile, key: arkKey},
		{name: ASKKeyFile, key: askKey},
		{name: VCEKKeyFile, key: vcekKey},
		{name: ASKCertFile, cert: ask},
		{name: VCEKCertFile, cert: vcek},
		{name: ARKCertFile, cert: ark},
	} {
		var block *pem.Block
		perm := os.FileMode(0o644)
		if f.key != nil {
			der, err := x509.MarshalPKCS8PrivateKey(f.key)
			if err != nil {
				return nil, fmt.Errorf("encoding %s: %w", f.name, err)
			}
			block, perm = &pem.Block{Type: "PRIVATE KEY", Bytes: der}, 0o600
		} else {
			block = &pem.Block{Type: "CERTIFICATE", Bytes: f.cert.Raw}
		}
		if err := writeNew(filepath.Join(dir, f.name), pem.EncodeToMemory(block), perm); err != nil {
			return nil, fmt.Errorf("creating simulated SNP signer: %w", err)
		}
	}
	return newSigner(ark, ask, vcek, vcekKey)
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Load reads a chain made by Create and checks that it is consistent: the
// VCEK key matches the VCEK certificate, the VCEK is signed by the ASK and the
// ASK by the self-signed ARK, and private keys are not readable by group or
// others.
func Load(dir string) (*Signer, error) {
	var certs [3]*x509.Certificate
	for i, name := range []string{ARKCertFile, ASKCertFile, VCEKCertFile} {
		c, err := readCert(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("loading simulated SNP signer: %w", err)
		}
		certs[i] = c
	}
	ark, ask, vcek := certs[0], certs[1], certs[2]
	key, err := readKey(filepath.Join(dir, VCEKKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading simulated SNP signer: %w", err)
	}
	vcekKey, ok := key.(*ecdsa.PrivateKey)
	if !ok || vcekKey.Curve != elliptic.P384() {
		return nil, fmt.Errorf("loading simulated SNP signer: %s is %T, want a P-384 ECDSA key", VCEKKeyFile, key)
	}
	if !vcekKey.PublicKey.Equal(vcek.PublicKey) {
		return nil, fmt.Errorf("loading simulated SNP signer: %s does not match %s", VCEKKeyFile, VCEKCertFile)
	}
	for _, k := range []string{ARKKeyFile, ASKKeyFile} {
		if err := checkKeyPerm(filepath.Join(dir, k)); err != nil {
			return nil, fmt.Errorf("loading simulated SNP signer: %w", err)
		}
	}
	if err := ark.CheckSignatureFrom(ark); err != nil {
		return nil, fmt.Errorf("loading simulated SNP signer: ARK is not self-signed: %w", err)
	}
	if err := ask.CheckSignatureFrom(ark); err != nil {
		return nil, fmt.Errorf("loading simulated SNP signer: ASK is not signed by the ARK: %w", err)
	}
	if err := vcek.CheckSignatureFrom(ask); err != nil {
		return nil, fmt.Errorf("loading simulated SNP signer: VCEK is not signed by the ASK: %w", err)
	}
	return newSigner(ark, ask, vcek, vcekKey)
}

// LoadOrCreate loads the chain in dir, or creates it when dir holds no ARK
// certificate yet.
func LoadOrCreate(dir string) (*Signer, error) {
	_, err := os.Stat(filepath.Join(dir, ARKCertFile))
	switch {
	case err == nil:
		return Load(dir)
	case errors.Is(err, fs.ErrNotExist):
		return Create(dir)
	default:
		return nil, fmt.Errorf("loading simulated SNP signer: %w", err)
	}
}

func newSigner(ark, ask, vcek *x509.Certificate, vcekKey *ecdsa.PrivateKey) (*Signer, error) {
	exts, err := kds.VcekCertificateExtensions(vcek)
	if err != nil {
		return nil, fmt.Errorf("reading simulated VCEK extensions: %w", err)
	}
	s := &Signer{ark: ark, ask: ask, vcek: vcek, vcekKey: vcekKey, tcb: exts.TCBVersion}
	if copy(s.chipID[:], exts.HWID) != abi.ChipIDSize {
		return nil, errors.New("reading simulated VCEK extensions: HWID is not 64 bytes")
	}
	table := abi.CertTable{Entries: []abi.CertTableEntry{
		{GUID: uuid.MustParse(abi.VcekGUID), RawCert: vcek.Raw},
		{GUID: uuid.MustParse(abi.AskGUID), RawCert: ask.Raw},
		{GUID: uuid.MustParse(abi.ArkGUID), RawCert: ark.Raw},
	}}
	s.certTable = table.Marshal()
	return s, nil
}

// readPEM reads a file holding exactly one PEM block of type typ and
// returns its bytes.
func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != typ || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: want exactly one PEM %s", path, typ)
	}
	return block.Bytes, nil
}

func readCert(path string) (*x509.Certificate, error) {
	der, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func checkKeyPerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: mode %v, want no access for group and others", path, fi.Mode().Perm())
	}
	return nil
}

func readKey(path string) (any, error) {
	if err := checkKeyPerm(path); err != nil {
		return nil, err
	}
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
