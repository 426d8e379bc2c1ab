//go:build cgo

package vclienttest

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-tpm-tools/simulator"

	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// Guest is a test binary's simulated guest: the simulated AMD secure
// processor's signer and the TPM simulator with EventLog extended into it.
// There is one TPM simulator per process, so tests using it never run in
// parallel. Start it in TestMain and Close it when the tests end.
type Guest struct {
	// Signer signs the simulated TEE's reports (see SimQuoter).
	Signer *sim.Signer
	// TPM is the TPM simulator; its PCRs hold EventLog.
	TPM *simulator.Simulator

	dir string
}

// StartGuest creates the signer in a temporary directory named from
// pattern (as os.MkdirTemp) and starts the TPM simulator with EventLog
// extended into it.
func StartGuest(pattern string) (*Guest, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return nil, err
	}
	g := &Guest{dir: dir}
	if g.Signer, err = sim.Create(filepath.Join(dir, "signer")); err != nil {
		g.Close()
		return nil, fmt.Errorf("creating simulated signer: %w", err)
	}
	if g.TPM, err = simulator.Get(); err != nil {
		g.Close()
		return nil, fmt.Errorf("starting TPM simulator: %w", err)
	}
	if err := ExtendLog(g.TPM, EventLog()); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Close closes the TPM simulator unless something that owned it did
// already, and removes the signer's directory.
func (g *Guest) Close() {
	if g.TPM != nil && !g.TPM.IsClosed() {
		g.TPM.Close()
	}
	os.RemoveAll(g.dir)
}
