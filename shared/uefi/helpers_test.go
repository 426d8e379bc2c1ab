package uefi

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(mustRead(t, path))
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runLoose runs osslsigncode verify, whose exit status is non-zero for a
// self-signed signer, and returns its output.
func runLoose(file string) (string, error) {
	out, err := exec.Command("osslsigncode", "verify", "-in", file).CombinedOutput()
	return string(out), err
}
