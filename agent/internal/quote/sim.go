package quote

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/simsp"
)

// Sim gets SNP-format reports from the simulated TEE: hostd's stand-in AMD
// secure processor behind a virtio-serial port (shared/simsp). The
// verifier trusts them only when started with the simulated root, and the
// token says so.
type Sim struct {
	client *simsp.Client
	closer io.Closer
}

// OpenSim opens the simulated TEE's port node (/dev/vportNpM, see boot.Devices.LookVirtioPort).
func OpenSim(path string) (*Sim, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening simulated TEE port: %w", err)
	}
	return &Sim{client: simsp.NewClient(f), closer: f}, nil
}

// NewSim returns a provider speaking the simulated TEE's protocol over rw
// (for tests: one end of a net.Pipe with simsp.Serve on the other). Close
// closes rw if it is an io.Closer.
func NewSim(rw io.ReadWriter) *Sim {
	s := &Sim{client: simsp.NewClient(rw)}
	if c, ok := rw.(io.Closer); ok {
		s.closer = c
	}
	return s
}

// Kind is evidence.KindSimSNP.
func (s *Sim) Kind() evidence.Kind { return evidence.KindSimSNP }

// Quote asks the simulated secure processor for a signed report.
func (s *Sim) Quote(ctx context.Context, reportData [ReportDataSize]byte) (report, certTable []byte, err error) {
	report, certTable, err = s.client.GetReport(ctx, reportData)
	if err != nil {
		return nil, nil, fmt.Errorf("getting simulated SNP report: %w", err)
	}
	if err := checkSNPReport(report, reportData); err != nil {
		return nil, nil, err
	}
	if err := checkCertTable(certTable); err != nil {
		return nil, nil, err
	}
	if len(certTable) == 0 {
		certTable = nil
	}
	return report, certTable, nil
}

// Close closes the port.
func (s *Sim) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}
