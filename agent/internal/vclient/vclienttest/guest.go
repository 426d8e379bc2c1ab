package vclienttest

import (
	"context"
	"crypto/sha512"
	"io"
	"net"
	"testing"

	"github.com/confidant-cvm/confidant/agent/internal/quote"
	"github.com/confidant-cvm/confidant/shared/simsp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/shared/tpm/tpmtest"
)

// EventLog returns a recorded TCG event log (a RHEL 8 UEFI boot,
// tpmtest.RHEL8UEFI). Extend it into a fresh TPM simulator with ExtendLog
// and quotes from that TPM replay against it.
func EventLog() []byte { return tpmtest.RHEL8UEFI() }

// ExtendLog extends every event of log into the TPM behind rw
// (tpmtest.ExtendLog).
func ExtendLog(rw io.ReadWriter, log []byte) error { return tpmtest.ExtendLog(rw, log) }

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
