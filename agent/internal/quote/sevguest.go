package quote

import (
	"context"
	"errors"
	"fmt"

	sevclient "github.com/google/go-sev-guest/client"

	"github.com/confidant-cvm/confidant/shared/evidence"
)

// maxVMPL is the highest SEV-SNP privilege level.
const maxVMPL = 3

// SEVGuest gets SEV-SNP extended reports through the /dev/sev-guest ioctl
// (go-sev-guest's client). The extended report carries the certificate
// table the host installed, if any; without one the verifier fetches the
// VCEK or has it cached.
type SEVGuest struct {
	dev  sevclient.Device
	vmpl uint
}

// OpenSEVGuest opens the SEV-SNP guest device at path (/dev/sev-guest) and
// requests reports at vmpl.
func OpenSEVGuest(path string, vmpl uint) (*SEVGuest, error) {
	if vmpl > maxVMPL {
		return nil, fmt.Errorf("opening %s: VMPL %d is not 0-%d", path, vmpl, maxVMPL)
	}
	d := &sevclient.LinuxDevice{}
	if err := d.Open(path); err != nil {
		return nil, fmt.Errorf("opening SEV-SNP guest device: %w", err)
	}
	return &SEVGuest{dev: d, vmpl: vmpl}, nil
}

// NewSEVGuest returns a provider on an open device (for tests: a fake
// device answering the ioctls).
func NewSEVGuest(dev sevclient.Device, vmpl uint) (*SEVGuest, error) {
	if dev == nil {
		return nil, errors.New("SEV-SNP guest device: none given")
	}
	if vmpl > maxVMPL {
		return nil, fmt.Errorf("SEV-SNP guest device: VMPL %d is not 0-%d", vmpl, maxVMPL)
	}
	return &SEVGuest{dev: dev, vmpl: vmpl}, nil
}

// Kind is evidence.KindSNP.
func (s *SEVGuest) Kind() evidence.Kind { return evidence.KindSNP }

// Quote asks the device for an extended report.
func (s *SEVGuest) Quote(ctx context.Context, reportData [ReportDataSize]byte) (report, certTable []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("getting SEV-SNP report: %w", err)
	}
	//lint:ignore SA1019 the Device form keeps report and certificate table apart and is what the tests drive; the configfs-tsm provider is preferred anyway.
	report, certTable, err = sevclient.GetRawExtendedReportAtVmpl(s.dev, reportData, int(s.vmpl))
	if err != nil {
		return nil, nil, fmt.Errorf("getting SEV-SNP report from /dev/sev-guest: %w", err)
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

// Close closes the device.
func (s *SEVGuest) Close() error { return s.dev.Close() }
