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

// BenchmarkVerifyUEFISecureBootCached is BenchmarkVerifyUEFISecureBoot with
// a LogCache that already holds the log's replay against these PCR values:
// what the verifier pays for the second guest booted from the same image.
// The quote (signature, extraData, PCR digest) is still verified each time.
func BenchmarkVerifyUEFISecureBootCached(b *testing.B) {
	f := attestWithLog(b, rhel8Log)
	opts := Options{LogCache: NewLogCache(0)}
	for b.Loop() {
		c, err := Verify(f.att, f.ak, f.nonce, opts)
		if err != nil {
			b.Fatal(err)
		}
		if !c.SecureBoot.Known || !c.SecureBoot.Enabled {
			b.Fatalf("secure boot %+v, want known and enabled", c.SecureBoot)
		}
	}
}
