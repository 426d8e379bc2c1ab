// Package tpmtest holds what tests and the load generator need to make
// vTPM evidence with a real boot history: a recorded TCG event log and a
// function that extends a log into a TPM (the go-tpm-tools simulator), so
// the TPM's quotes replay against the log in shared/tpm's strict check.
package tpmtest

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

//go:embed testdata/rhel8-uefi.bin
var rhel8UEFI []byte

// RHEL8UEFI returns a copy of a TCG event log of a RHEL 8 UEFI boot with
// Secure Boot on (34 KB, SHA-1 and SHA-256 banks), recorded on GCE by the
// go-tpm-tools authors (go-tpm-tools v0.4.10 internal/test/eventlogs,
// Apache License 2.0; see testdata/README.md).
func RHEL8UEFI() []byte { return bytes.Clone(rhel8UEFI) }

// ExtendLog extends every measured event of log into the TPM behind rw, in
// every bank the log records, so the TPM's PCRs end where the machine that
// wrote the log ended.
func ExtendLog(rw io.ReadWriter, log []byte) error {
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{})
	if err != nil {
		return fmt.Errorf("parsing event log: %w", err)
	}
	algs := map[register.HashAlg]tpm2.Algorithm{
		register.HashSHA1:   tpm2.AlgSHA1,
		register.HashSHA256: tpm2.AlgSHA256,
		register.HashSHA384: tpm2.AlgSHA384,
	}
	for _, alg := range el.Algs {
		tpmAlg, ok := algs[alg]
		if !ok {
			return fmt.Errorf("extending event log: unsupported bank %v", alg)
		}
		for _, e := range el.Events(alg) {
			if e.Type == tcg.NoAction || len(e.Digest) == 0 {
				continue
			}
			if err := tpm2.PCRExtend(rw, tpmutil.Handle(e.Index), tpmAlg, e.Digest, ""); err != nil {
				return fmt.Errorf("extending PCR %d: %w", e.Index, err)
			}
		}
	}
	return nil
}
