package quote

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/google/go-sev-guest/abi"
	labi "github.com/google/go-sev-guest/client/linuxabi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	tdxlabi "github.com/google/go-tdx-guest/client/linuxabi"

	"github.com/confidant-cvm/confidant/shared/simsp"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

//go:embed testdata/tdx_prod_quote_SPR_E4.dat
var recordedTDXQuote []byte

// signer is the simulated AMD secure processor of this test binary (made
// once in TestMain; its RSA keys take a moment).
var signer *sim.Signer

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "confidant-quote-test-")
	if err == nil {
		signer, err = sim.Create(dir + "/signer")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the simulated signer:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func reportDataOf(s string) [ReportDataSize]byte {
	var rd [ReportDataSize]byte
	copy(rd[:], s)
	return rd
}

// verifySim checks that report verifies against the simulated root and
// carries rd.
func verifySim(t *testing.T, report, certTable []byte, rd [ReportDataSize]byte) {
	t.Helper()
	if _, err := snp.Verify(report, certTable, snp.Options{SimRoot: signer.RootCert(), ReportData: rd[:], AllowSMT: true}); err != nil {
		t.Fatalf("snp.Verify of the returned report: %v", err)
	}
}

// signFor signs a report for rd with the simulated signer.
func signFor(rd [ReportDataSize]byte, vmpl uint32) ([]byte, []byte, error) {
	return signer.Sign(sim.Request{ReportData: rd, VMPL: vmpl})
}

// serveSim runs simsp.Serve with sign on one end of a pipe and returns a
// Sim provider on the other.
func serveSim(t *testing.T, sign simsp.ReportSignerFunc) *Sim {
	t.Helper()
	guest, host := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- simsp.Serve(ctx, host, sign, nil) }()
	p := NewSim(guest)
	t.Cleanup(func() {
		cancel()
		p.Close()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("simsp.Serve: %v", err)
		}
	})
	return p
}

// fakeSEVDevice answers /dev/sev-guest's extended report ioctl with reports
// signed by the simulated signer, as the kernel driver does: a call with a
// certificate buffer too small for the host's table fails with the table's
// length, so the caller can ask again.
type fakeSEVDevice struct {
	certs    []byte
	fwErr    abi.SevFirmwareStatus      // returned for the report call when set
	edit     func(report []byte) []byte // changes the signed report
	requests []labi.SnpReportReqABI
	closed   bool
}

func (d *fakeSEVDevice) Open(string) error { return nil }
func (d *fakeSEVDevice) Close() error {
	d.closed = true
	return nil
}
func (d *fakeSEVDevice) Product() *spb.SevProduct { return abi.DefaultSevProduct() }

func (d *fakeSEVDevice) Ioctl(command uintptr, req any) (uintptr, error) {
	r, ok := req.(*labi.SnpUserGuestRequest)
	if !ok || command != labi.IocSnpGetExtendedReport {
		return 0, fmt.Errorf("unexpected ioctl %#x %T", command, req)
	}
	ext := r.ReqData.(*labi.SnpExtendedReportReq)
	rsp := r.RespData.(*labi.SnpReportRespABI)
	if int(ext.CertsLength) < len(d.certs) {
		r.FwErr = uint64(abi.GuestRequestInvalidLength)
		ext.CertsLength = uint32(len(d.certs))
		return 0, syscall.EIO
	}
	d.requests = append(d.requests, ext.Data)
	if d.fwErr != 0 {
		r.FwErr = uint64(d.fwErr)
		return 0, syscall.EIO
	}
	report, _, err := signFor(ext.Data.ReportData, ext.Data.Vmpl)
	if err != nil {
		return 0, err
	}
	if d.edit != nil {
		report = d.edit(report)
	}
	copy(rsp.Data[:], report)
	copy(ext.Certs, d.certs)
	return 0, nil
}

// fakeTDXDevice answers /dev/tdx_guest's ioctls: a TDREPORT for the
// request, then quote as the quote.
type fakeTDXDevice struct {
	quote      []byte
	status     uint64
	reportData [][64]byte
	closed     bool
}

func (d *fakeTDXDevice) Open(string) error { return nil }
func (d *fakeTDXDevice) Close() error {
	d.closed = true
	return nil
}

func (d *fakeTDXDevice) Ioctl(command uintptr, req any) (uintptr, error) {
	switch r := req.(type) {
	case *tdxlabi.TdxReportReq:
		if command != tdxlabi.IocTdxGetReport {
			return 0, fmt.Errorf("TDREPORT request with ioctl %#x", command)
		}
		d.reportData = append(d.reportData, r.ReportData)
		copy(r.TdReport[:], bytes.Repeat([]byte{0xaa}, len(r.TdReport)))
		return tdxlabi.TdxAttestSuccess, nil
	case *tdxlabi.TdxQuoteReq:
		if command != tdxlabi.IocTdxGetQuote {
			return 0, fmt.Errorf("quote request with ioctl %#x", command)
		}
		hdr := r.Buffer.(*tdxlabi.TdxQuoteHdr)
		if hdr.InLen != tdxlabi.TdReportSize || hdr.Data[0] != 0xaa {
			return 0, errors.New("quote request does not carry the TDREPORT")
		}
		hdr.Status = d.status
		if d.status == 0 {
			hdr.OutLen = uint32(copy(hdr.Data[:], d.quote))
		}
		return tdxlabi.TdxAttestSuccess, nil
	}
	return 0, fmt.Errorf("unexpected ioctl %#x %T", command, req)
}

// recordedReportData is the REPORT_DATA of the recorded TDX quote.
func recordedReportData(t *testing.T) [ReportDataSize]byte {
	t.Helper()
	// TDX quote v4: 48-byte header, REPORT_DATA at offset 520 of the body.
	const off = 48 + 520
	var rd [ReportDataSize]byte
	copy(rd[:], recordedTDXQuote[off:off+ReportDataSize])
	return rd
}
