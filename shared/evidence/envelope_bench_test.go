package evidence

import (
	"crypto/rand"
	"testing"
)

// BenchmarkDecodeAttestation decodes an envelope of the size the verifier
// receives per attestation: an SNP report, a certificate table with a VCEK,
// ASK and ARK (5 KB), runtime data (1 KB) and vTPM evidence with a UEFI
// event log (40 KB).
func BenchmarkDecodeAttestation(b *testing.B) {
	random := func(n int) []byte {
		buf := make([]byte, n)
		if _, err := rand.Read(buf); err != nil {
			b.Fatal(err)
		}
		return buf
	}
	e := &Envelope{Version: Version, TEE: KindSimSNP, RuntimeData: random(1 << 10), Report: random(SNPReportSize),
		CertTable: random(5 << 10), TPM: random(40 << 10)}
	in, err := e.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}
