package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
	"google.golang.org/protobuf/proto"
)

func TestAttester(t *testing.T) {
	rw := newSimulator(t)
	extendLog(t, rw, rhel8Log)
	a, err := NewAttester(rw)
	if err != nil {
		t.Fatalf("NewAttester: %v", err)
	}
	defer a.Close()
	if _, ok := a.AKPublic().(*ecdsa.PublicKey); !ok {
		t.Fatalf("AKPublic is %T, want *ecdsa.PublicKey", a.AKPublic())
	}

	t.Run("attestation content", func(t *testing.T) {
		nonce := sha256.Sum256([]byte("runtime data"))
		raw, err := a.Attest(nonce[:], rhel8Log)
		if err != nil {
			t.Fatalf("Attest: %v", err)
		}
		var att pb.Attestation
		if err := proto.Unmarshal(raw, &att); err != nil {
			t.Fatalf("decoding attestation: %v", err)
		}
		if att.GetTeeAttestation() != nil {
			t.Error("attestation carries a TEE report")
		}
		if !bytes.Equal(att.GetEventLog(), rhel8Log) {
			t.Error("attestation does not carry the given event log")
		}
		pub, err := tpm2.DecodePublic(att.GetAkPub())
		if err != nil {
			t.Fatalf("decoding AK: %v", err)
		}
		if pub.Attributes&requiredAKAttrs != requiredAKAttrs {
			t.Errorf("AK attributes %#x lack %#x", pub.Attributes, requiredAKAttrs)
		}
		if _, err := Verify(raw, a.AKPublic(), nonce[:], Options{Banks: []string{"sha256", "sha1"}}); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})

	t.Run("same AK after re-creation", func(t *testing.T) {
		b, err := NewAttester(rw)
		if err != nil {
			t.Fatalf("NewAttester: %v", err)
		}
		defer b.Close()
		if !a.AKPublic().(*ecdsa.PublicKey).Equal(b.AKPublic()) {
			t.Error("a second AK from the same TPM differs")
		}
	})

	t.Run("no event log is stored as none", func(t *testing.T) {
		nonce := []byte("n")
		raw, err := a.Attest(nonce, nil)
		if err != nil {
			t.Fatalf("Attest: %v", err)
		}
		if _, err := Verify(raw, a.AKPublic(), nonce, Options{}); !errors.Is(err, ErrEventLog) {
			t.Errorf("Verify: %v, want %v", err, ErrEventLog)
		}
	})

	for name, extraData := range map[string][]byte{
		"empty extraData":    nil,
		"oversize extraData": make([]byte, MaxExtraDataSize+1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := a.Attest(extraData, rhel8Log); err == nil {
				t.Error("Attest accepted it")
			}
		})
	}
	t.Run("largest extraData", func(t *testing.T) {
		nonce := bytes.Repeat([]byte{7}, MaxExtraDataSize)
		raw, err := a.Attest(nonce, rhel8Log)
		if err != nil {
			t.Fatalf("Attest: %v", err)
		}
		if _, err := Verify(raw, a.AKPublic(), nonce, Options{}); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})
}

func TestNewAttesterNoTPM(t *testing.T) {
	if _, err := NewAttester(nil); err == nil {
		t.Error("NewAttester(nil) succeeded")
	}
	if _, err := NewDecryptionKey(nil); err == nil {
		t.Error("NewDecryptionKey(nil) succeeded")
	}
}

func TestDecryptKey(t *testing.T) {
	rw := newSimulator(t)
	k, err := NewDecryptionKey(rw)
	if err != nil {
		t.Fatalf("NewDecryptionKey: %v", err)
	}
	defer k.Close()
	other, err := NewDecryptionKey(rw)
	if err != nil {
		t.Fatalf("NewDecryptionKey: %v", err)
	}
	defer other.Close()
	if k.Public().N.BitLen() != 2048 {
		t.Errorf("key has %d bits, want 2048", k.Public().N.BitLen())
	}
	if k.Public().Equal(other.Public()) {
		t.Error("two runtime keys are the same key")
	}

	t.Run("key attributes", func(t *testing.T) {
		pub, _, _, err := tpm2.ReadPublic(rw, k.key.Handle())
		if err != nil {
			t.Fatalf("ReadPublic: %v", err)
		}
		must := tpm2.FlagDecrypt | tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin
		mustNot := tpm2.FlagSign | tpm2.FlagRestricted
		if pub.Attributes&must != must || pub.Attributes&mustNot != 0 {
			t.Errorf("attributes %#x, want %#x set and %#x clear", pub.Attributes, must, mustNot)
		}
		s := pub.RSAParameters.Sign
		if s == nil || s.Alg != tpm2.AlgOAEP || s.Hash != tpm2.AlgSHA256 {
			t.Errorf("scheme %+v, want OAEP SHA-256", s)
		}
	})

	secret := []byte("disk key: 32 bytes of randomness")
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), secret, nil)
	if err != nil {
		t.Fatalf("EncryptOAEP: %v", err)
	}
	t.Run("round trip", func(t *testing.T) {
		got, err := k.Decrypt(ct)
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if !bytes.Equal(got, secret) {
			t.Errorf("Decrypt = %q, want %q", got, secret)
		}
	})

	forOther, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, other.Public(), secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	sha1OAEP, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, k.Public(), secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	labelled, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), secret, []byte("label"))
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 the test proves the TPM key refuses a PKCS #1 v1.5 ciphertext.
	pkcs1, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public(), secret)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(ct)
	tampered[10] ^= 1
	for name, c := range map[string][]byte{
		"ciphertext for another key": forOther,
		"OAEP with SHA-1":            sha1OAEP,
		"OAEP with a label":          labelled,
		"PKCS#1 v1.5":                pkcs1,
		"tampered ciphertext":        tampered,
		"short ciphertext":           ct[:100],
		"empty ciphertext":           nil,
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := k.Decrypt(c); err == nil {
				t.Errorf("Decrypt succeeded: %q", got)
			}
		})
	}

	t.Run("other key decrypts its own", func(t *testing.T) {
		got, err := other.Decrypt(forOther)
		if err != nil || !bytes.Equal(got, secret) {
			t.Errorf("Decrypt = %q, %v", got, err)
		}
	})
}

func BenchmarkAttest(b *testing.B) {
	rw := newSimulator(b)
	extendLog(b, rw, ubuntu2404Log)
	a, err := NewAttester(rw)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	nonce := sha256.Sum256([]byte("bench"))
	for b.Loop() {
		if _, err := a.Attest(nonce[:], ubuntu2404Log); err != nil {
			b.Fatal(err)
		}
	}
}

// extendingTPM extends PCR 10 through the simulator right before the
// command that follows a TPM2_Quote (go-tpm-tools' PCR read), its first
// times times: a PCR moving between the quote and the read, as the kernel's
// IMA policy does while the agent loads modules.
type extendingTPM struct {
	io.ReadWriter
	t         *testing.T
	times     int
	lastQuote bool
}

func (e *extendingTPM) Write(b []byte) (int, error) {
	if e.lastQuote && e.times > 0 {
		e.times--
		if err := tpm2.PCRExtend(e.ReadWriter, tpmutil.Handle(10), tpm2.AlgSHA256, bytes.Repeat([]byte{1}, 32), ""); err != nil {
			e.t.Errorf("extending PCR 10: %v", err)
		}
	}
	// TPM2_Quote is command code 0x158 (TPM 2.0 Part 2, TPM_CC), at bytes
	// 6-9 of the command header.
	e.lastQuote = len(b) >= 10 && binary.BigEndian.Uint32(b[6:10]) == 0x158
	return e.ReadWriter.Write(b)
}

func TestAttestPCRMovedDuringQuote(t *testing.T) {
	rw := newSimulator(t)
	extendLog(t, rw, rhel8Log)
	e := &extendingTPM{ReadWriter: rw, t: t}
	a, err := NewAttester(e)
	if err != nil {
		t.Fatalf("NewAttester: %v", err)
	}
	defer a.Close()
	nonce := sha256.Sum256([]byte("runtime data"))

	// Moved during the first quotes of each bank: quoted again, and the
	// result verifies.
	e.times = maxQuoteTries - 1
	raw, err := a.Attest(nonce[:], rhel8Log)
	if err != nil {
		t.Fatalf("Attest with PCR 10 moving %d times: %v", maxQuoteTries-1, err)
	}
	if _, err := Verify(raw, a.AKPublic(), nonce[:], Options{Banks: []string{"sha256"}}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if e.times != 0 {
		t.Errorf("%d extensions left: the quote was not retried", e.times)
	}

	// Moving on every try: the error, not an endless loop.
	e.times = 1000
	if _, err := a.Attest(nonce[:], rhel8Log); err == nil || !pcrsMovedDuringQuote(err) {
		t.Errorf("Attest with PCR 10 always moving = %v, want the PCR digest error", err)
	}
}
