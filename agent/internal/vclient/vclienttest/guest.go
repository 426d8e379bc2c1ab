package vclienttest

import (
	"bytes"
	"context"
	"crypto/sha512"
	_ "embed"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/confidant-cvm/confidant/agent/internal/quote"
	"github.com/confidant-cvm/confidant/shared/simsp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

//go:embed testdata/rhel8-uefi.bin
var eventLog []byte

// EventLog returns a recorded TCG event log (a RHEL 8 UEFI boot; see
// testdata/README.md). Extend it into a fresh TPM simulator with ExtendLog
// and quotes from that TPM replay against it.
func EventLog() []byte { return bytes.Clone(eventLog) }

// ExtendLog extends every event of log into the TPM behind rw, so its PCRs
// end where the machine that wrote the log ended.
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
		for _, e := range el.Events(alg) {
			if e.Type == tcg.NoAction || len(e.Digest) == 0 {
				continue
			}
			if err := tpm2.PCRExtend(rw, tpmutil.Handle(e.Index), algs[alg], e.Digest, ""); err != nil {
				return fmt.Errorf("extending PCR %d: %w", e.Index, err)
			}
		}
	}
	return nil
}

// Measurement is the launch digest the simulated TEE of SimQuoter reports.
func Measurement() [sha512.Size384]byte { return sha512.Sum384([]byte("confidant vclient test image")) }

// SimQuoter returns the simulated TEE behind a quote.Sim provider, over a
// pipe to simsp.Serve signing with signer. It is closed when the test ends.
func SimQuoter(t testing.TB, signer *sim.Signer) *quote.Sim {
	t.Helper()
	guest, host := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	sign := simsp.ReportSignerFunc(func(rd [simsp.ReportDataSize]byte) ([]byte, []byte, error) {
		return signer.Sign(sim.Request{ReportData: rd, Measurement: Measurement()})
	})
	go func() { done <- simsp.Serve(ctx, host, sign, nil) }()
	p := quote.NewSim(guest)
	t.Cleanup(func() {
		cancel()
		p.Close()
		<-done
	})
	return p
}
