package floor

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"testing"
)

// BenchmarkRSA4096PSSVerify: one link of the SNP certificate chain (the ARK
// signs the ASK, the ASK signs the VCEK: RSA-4096, RSASSA-PSS, SHA-384).
func BenchmarkRSA4096PSSVerify(b *testing.B) {
	k, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		b.Fatal(err)
	}
	d := sha512.Sum384([]byte("tbs certificate"))
	opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA384}
	sig, err := rsa.SignPSS(rand.Reader, k, crypto.SHA384, d[:], opts)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := rsa.VerifyPSS(&k.PublicKey, crypto.SHA384, d[:], sig, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppraisalFloorParallel: the cryptography of one SNP + vTPM
// appraisal (a P-384 verification of the report, a P-256 verification of
// the quote, an ES256 signature of the token) on every core at once. Its
// ops/s is the floor throughput of the appraisal on this machine, as loaded
// as it is during the run.
func BenchmarkAppraisalFloorParallel(b *testing.B) {
	d384 := sha512.Sum384([]byte("snp report"))
	k384, sig384 := ecdsaFixture(b, elliptic.P384(), d384[:])
	d256 := sha256.Sum256([]byte("tpm quote"))
	k256, sig256 := ecdsaFixture(b, elliptic.P256(), d256[:])
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !ecdsa.VerifyASN1(&k384.PublicKey, d384[:], sig384) || !ecdsa.VerifyASN1(&k256.PublicKey, d256[:], sig256) {
				b.Error("verify failed")
				return
			}
			d := sha256.Sum256(msg)
			if _, err := ecdsa.SignASN1(rand.Reader, signer, d[:]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
