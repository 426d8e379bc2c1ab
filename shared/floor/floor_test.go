package floor

import (
	"crypto"
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	"golang.org/x/crypto/xts"
)

func ecdsaFixture(b *testing.B, curve elliptic.Curve, digest []byte) (*ecdsa.PrivateKey, []byte) {
	b.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, k, digest)
	if err != nil {
		b.Fatal(err)
	}
	return k, sig
}

// BenchmarkP384Verify: the VCEK's signature over an SNP report.
func BenchmarkP384Verify(b *testing.B) {
	d := sha512.Sum384([]byte("snp report"))
	k, sig := ecdsaFixture(b, elliptic.P384(), d[:])
	b.ResetTimer()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkP256Verify: the vTPM AK's signature over a quote.
func BenchmarkP256Verify(b *testing.B) {
	d := sha256.Sum256([]byte("tpm quote"))
	k, sig := ecdsaFixture(b, elliptic.P256(), d[:])
	b.ResetTimer()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkRSA2048Verify: one RSA-2048 PKCS #1 v1.5 verification.
func BenchmarkRSA2048Verify(b *testing.B) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("message"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, d[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkES256Sign: signing a token (SHA-256 + P-256 ECDSA).
func BenchmarkES256Sign(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 1024)
	b.ResetTimer()
	for b.Loop() {
		d := sha256.Sum256(msg)
		if _, err := ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkES256Verify: verifying a token's signature (SHA-256 + P-256).
func BenchmarkES256Verify(b *testing.B) {
	msg := make([]byte, 1024)
	d := sha256.Sum256(msg)
	k, sig := ecdsaFixture(b, elliptic.P256(), d[:])
	b.ResetTimer()
	for b.Loop() {
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

const xtsChunk = 1 << 20

func newXTS(b *testing.B) *xts.Cipher {
	b.Helper()
	key := make([]byte, 64)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func encryptChunk(c *xts.Cipher, buf []byte, base uint64) {
	for off := 0; off < len(buf); off += 4096 {
		sector := buf[off : off+4096]
		c.Encrypt(sector, sector, base+uint64(off)/512)
	}
}

// BenchmarkAESXTSPerCore: aes-xts-plain64 with 4096-byte sectors on one
// goroutine (bytes/s per core).
func BenchmarkAESXTSPerCore(b *testing.B) {
	c := newXTS(b)
	buf := make([]byte, xtsChunk)
	b.SetBytes(xtsChunk)
	b.ResetTimer()
	var i uint64
	for b.Loop() {
		encryptChunk(c, buf, i*xtsChunk/512)
		i++
	}
}

// BenchmarkAESXTSAllCores: the same on GOMAXPROCS goroutines.
func BenchmarkAESXTSAllCores(b *testing.B) {
	c := newXTS(b)
	b.SetBytes(xtsChunk)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, xtsChunk)
		var i uint64
		for pb.Next() {
			encryptChunk(c, buf, i*xtsChunk/512)
			i++
		}
	})
}
