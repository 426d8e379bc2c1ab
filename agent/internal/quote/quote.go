// Package quote gets the guest's hardware evidence: an SEV-SNP attestation
// report or a TDX quote whose REPORT_DATA the caller chooses.
//
// Four interfaces sit behind one small Provider interface:
//
//   - configfs-tsm (/sys/kernel/config/tsm/report), the kernel's common
//     interface for SEV-SNP ("sev_guest") and TDX ("tdx_guest") since 6.7;
//   - /dev/sev-guest, the SEV-SNP guest driver's ioctl (extended report, so
//     the VCEK certificate table comes with it when the host provides one);
//   - /dev/tdx_guest, the TDX guest driver's ioctl (TDREPORT, then a quote
//     from the quoting enclave through the host);
//   - the simulated TEE: hostd's stand-in AMD secure processor, reached over
//     a virtio-serial port named by configuration (shared/simsp).
//
// Every provider checks that the report it got back is of the right size
// and carries the REPORT_DATA it asked for, so a host that answers with
// somebody else's report is caught here with a clear error, before the
// verifier would refuse it anyway.
package quote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/configfsi"

	"github.com/confidant-cvm/confidant/agent/internal/boot"
	"github.com/confidant-cvm/confidant/shared/agentconfig"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/simsp"
)

// ReportDataSize is the size of REPORT_DATA in SNP reports and TDX quotes.
const ReportDataSize = 64

// Outcomes callers branch on.
var (
	// ErrNoTEE: no usable TEE interface of the wanted kind exists.
	ErrNoTEE = errors.New("no TEE interface")
	// ErrBadReport: the TEE answered with something that is not a report for
	// our request (wrong size, wrong REPORT_DATA, unparsable quote).
	ErrBadReport = errors.New("TEE returned an unusable report")
	// ErrUnsupported: the interface serves a TEE kind the agent does not
	// know (a configfs-tsm provider other than sev_guest or tdx_guest).
	ErrUnsupported = errors.New("unsupported TEE")
)

// Provider produces hardware evidence.
type Provider interface {
	// Kind is the kind of report Quote returns.
	Kind() evidence.Kind
	// Quote returns a report (SNP report or TDX quote) whose REPORT_DATA is
	// reportData, and for SNP the certificate table when the platform
	// provides one (nil otherwise).
	Quote(ctx context.Context, reportData [ReportDataSize]byte) (report, certTable []byte, err error)
}

// Source is a Provider that holds an open device or port; Close releases it.
type Source interface {
	Provider
	io.Closer
}

// Options say where to look. Zero values are documented per field.
type Options struct {
	// TEE is the interface to use; "" or agentconfig.TEEAuto: the first hardware
	// interface present, in the order configfs-tsm, sev-guest, tdx-guest.
	// Auto never selects the simulation (as in agent/internal/config).
	TEE agentconfig.TEE
	// SimPort names the simulated TEE's virtio-serial port; "":
	// simsp.PortName.
	SimPort string
	// SysDir is where sysfs is mounted; "": "/sys".
	SysDir string
	// DevDir is where devtmpfs is mounted; "": "/dev".
	DevDir string
	// Configfs is the configfs-tsm client; nil: the files under
	// SysDir/kernel/config/tsm.
	Configfs configfsi.Client
	// VMPL is the privilege level requested from /dev/sev-guest; 0 unless the
	// guest runs above an SVSM at a higher VMPL. configfs-tsm uses the
	// kernel's floor and ignores it.
	VMPL uint
}

func (o Options) withDefaults() Options {
	if o.TEE == "" {
		o.TEE = agentconfig.TEEAuto
	}
	if o.SimPort == "" {
		o.SimPort = simsp.PortName
	}
	if o.SysDir == "" {
		o.SysDir = "/sys"
	}
	if o.DevDir == "" {
		o.DevDir = "/dev"
	}
	return o
}

// Detect opens the TEE interface opts ask for, looking once (it does not
// wait for devices to appear; the boot flow's device stage does that). With
// auto it tries configfs-tsm, /dev/sev-guest and /dev/tdx_guest in that
// order (boot.Devices.TEECandidates) and returns the first that opens; when
// none does, the error matches ErrNoTEE and says what was tried.
func Detect(opts Options) (Source, error) {
	opts = opts.withDefaults()
	dev := boot.Devices{SysDir: opts.SysDir, DevDir: opts.DevDir}
	switch opts.TEE {
	case agentconfig.TEESim:
		p, err := dev.LookVirtioPort(opts.SimPort)
		if errors.Is(err, boot.ErrNotFound) {
			err = fmt.Errorf("%w: %w", err, ErrNoTEE)
		}
		if err != nil {
			return nil, err
		}
		return Open(agentconfig.TEESim, p, opts)
	case agentconfig.TEEAuto, agentconfig.TEEConfigfsTSM, agentconfig.TEESEVGuest, agentconfig.TEETDXGuest:
	default:
		return nil, fmt.Errorf("TEE %q: %w", opts.TEE, ErrUnsupported)
	}
	var tried []string
	var errs []error
	for _, c := range dev.TEECandidates(opts.TEE) {
		if _, err := os.Stat(c.Path); err != nil {
			tried = append(tried, c.Path+" (absent)")
			continue
		}
		src, err := Open(c.Kind, c.Path, opts)
		if err == nil {
			return src, nil
		}
		tried = append(tried, c.Path+" (unusable)")
		errs = append(errs, err)
	}
	err := fmt.Errorf("%s: tried %s: %w", opts.TEE, strings.Join(tried, ", "), ErrNoTEE)
	return nil, errors.Join(append([]error{err}, errs...)...)
}

// Open opens the TEE interface of the given kind at path: the configfs-tsm
// report directory, the device node, or the simulated TEE's port node, as
// agent/internal/boot.FindTEE reports them. For configfs-tsm, a non-nil
// opts.Configfs is used instead of path.
func Open(kind agentconfig.TEE, path string, opts Options) (Source, error) {
	opts = opts.withDefaults()
	switch kind {
	case agentconfig.TEEConfigfsTSM:
		client := opts.Configfs
		if client == nil {
			// path is SYSDIR/kernel/config/tsm/report.
			sysDir := strings.TrimSuffix(filepath.Clean(path), "/"+boot.ConfigfsReportDir)
			if sysDir == filepath.Clean(path) {
				return nil, fmt.Errorf("configfs-tsm path %s does not end in %s", path, boot.ConfigfsReportDir)
			}
			client = &dirClient{sysDir: sysDir}
		}
		return NewConfigfsTSM(client)
	case agentconfig.TEESEVGuest:
		return OpenSEVGuest(path, opts.VMPL)
	case agentconfig.TEETDXGuest:
		return OpenTDXGuest(path)
	case agentconfig.TEESim:
		return OpenSim(path)
	}
	return nil, fmt.Errorf("TEE %q: %w", kind, ErrUnsupported)
}

// SNP report layout (go-sev-guest abi).
const (
	snpReportDataOffset = 0x50
)

// checkSNPReport checks an SNP report's size and REPORT_DATA.
func checkSNPReport(report []byte, reportData [ReportDataSize]byte) error {
	if len(report) != evidence.SNPReportSize {
		return fmt.Errorf("%w: SNP report is %d bytes, want %d", ErrBadReport, len(report), evidence.SNPReportSize)
	}
	if !bytes.Equal(report[snpReportDataOffset:snpReportDataOffset+ReportDataSize], reportData[:]) {
		return fmt.Errorf("%w: SNP report carries another REPORT_DATA than requested", ErrBadReport)
	}
	return nil
}

// checkCertTable bounds the SNP certificate table.
func checkCertTable(certTable []byte) error {
	if len(certTable) > evidence.MaxCertTableSize {
		return fmt.Errorf("%w: certificate table is %d bytes, at most %d", ErrBadReport, len(certTable), evidence.MaxCertTableSize)
	}
	return nil
}
