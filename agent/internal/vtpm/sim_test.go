//go:build cgo

package vtpm

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
)

func TestNewWithSimulator(t *testing.T) {
	s, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(s)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	if _, ok := d.AK.AKPublic().(*ecdsa.PublicKey); !ok {
		t.Errorf("AK is a %T", d.AK.AKPublic())
	}
	msg := []byte("released key")
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, d.RuntimeKey.Public(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := d.RuntimeKey.Decrypt(ct)
	if err != nil || string(pt) != string(msg) {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Close closed the simulator too: the Device owns it.
	if _, err := s.Write([]byte{0}); err == nil {
		t.Error("the TPM is still open after Close")
	}
}
