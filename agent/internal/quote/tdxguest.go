package quote

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxclient "github.com/google/go-tdx-guest/client"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/confidant-cvm/confidant/shared/evidence"
)

// TDXGuest gets TDX quotes through the /dev/tdx_guest ioctls (go-tdx-guest's
// client): a TDREPORT for the REPORT_DATA, turned into a quote by the
// quoting enclave through the host.
type TDXGuest struct {
	dev tdxclient.Device
}

// OpenTDXGuest opens the TDX guest device at path (/dev/tdx_guest).
func OpenTDXGuest(path string) (*TDXGuest, error) {
	d := &tdxclient.LinuxDevice{}
	if err := d.Open(path); err != nil {
		return nil, fmt.Errorf("opening TDX guest device: %w", err)
	}
	return &TDXGuest{dev: d}, nil
}

// NewTDXGuest returns a provider on an open device (for tests: a fake
// device answering the ioctls).
func NewTDXGuest(dev tdxclient.Device) (*TDXGuest, error) {
	if dev == nil {
		return nil, errors.New("TDX guest device: none given")
	}
	return &TDXGuest{dev: dev}, nil
}

// Kind is evidence.KindTDX.
func (t *TDXGuest) Kind() evidence.Kind { return evidence.KindTDX }

// Quote asks the device for a quote.
func (t *TDXGuest) Quote(ctx context.Context, reportData [ReportDataSize]byte) (report, certTable []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("getting TDX quote: %w", err)
	}
	q, err := tdxclient.GetRawQuote(t.dev, reportData)
	if err != nil {
		return nil, nil, fmt.Errorf("getting TDX quote from /dev/tdx_guest: %w", err)
	}
	if err := checkTDXQuote(q, reportData); err != nil {
		return nil, nil, err
	}
	return bytes.Clone(q), nil, nil
}

// Close closes the device.
func (t *TDXGuest) Close() error { return t.dev.Close() }

// checkTDXQuote checks a TDX quote's size, that it parses, and its
// REPORT_DATA. The parser sees bytes from the host, so a panic in it is
// turned into ErrBadReport.
func checkTDXQuote(q []byte, reportData [ReportDataSize]byte) (err error) {
	if len(q) < evidence.TDXQuoteMinSize || len(q) > evidence.TDXQuoteMaxSize {
		return fmt.Errorf("%w: TDX quote is %d bytes, want %d to %d", ErrBadReport, len(q), evidence.TDXQuoteMinSize, evidence.TDXQuoteMaxSize)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: parsing TDX quote: panic: %v", ErrBadReport, p)
		}
	}()
	parsed, err := tdxabi.QuoteToProto(q)
	if err != nil {
		return fmt.Errorf("%w: parsing TDX quote: %v", ErrBadReport, err)
	}
	var got []byte
	switch v := parsed.(type) {
	case *tdxpb.QuoteV4:
		got = v.GetTdQuoteBody().GetReportData()
	default:
		return fmt.Errorf("%w: TDX quote of type %T", ErrBadReport, parsed)
	}
	if !bytes.Equal(got, reportData[:]) {
		return fmt.Errorf("%w: TDX quote carries another REPORT_DATA than requested", ErrBadReport)
	}
	return nil
}
