package tpm

import "testing"

// BenchmarkVerifyUEFISecureBoot verifies vTPM evidence with the event log
// of a real UEFI boot with Secure Boot on (RHEL 8, 34 KB, its db and dbx
// certificates included), quoted by the TPM simulator: the evidence the
// verifier's appraisal benchmarks carry. BenchmarkVerify uses a recorded
// QEMU + OVMF boot without Secure Boot (11 KB).
func BenchmarkVerifyUEFISecureBoot(b *testing.B) {
	f := attestWithLog(b, rhel8Log)
	for b.Loop() {
		c, err := Verify(f.att, f.ak, f.nonce, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if !c.SecureBoot.Known || !c.SecureBoot.Enabled {
			b.Fatalf("secure boot %+v, want known and enabled", c.SecureBoot)
		}
	}
}
