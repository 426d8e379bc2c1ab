package appraise

import (
	"crypto/subtle"
	"errors"
	"fmt"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/tdx"
)

// snpReportDataOffset is REPORT_DATA's place in an SNP report.
const snpReportDataOffset = 0x50

// checkReportData compares the raw report's REPORT_DATA with want before
// any signature is checked.
func checkReportData(env *evidence.Envelope, want [64]byte) error {
	got, err := rawReportData(env)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, want[:]) != 1 {
		return fmt.Errorf("%w: report has %x", ErrBinding, got)
	}
	return nil
}

func rawReportData(env *evidence.Envelope) (rd []byte, err error) {
	switch env.TEE {
	case evidence.KindSNP, evidence.KindSimSNP:
		if len(env.Report) != evidence.SNPReportSize {
			return nil, fmt.Errorf("%w: SNP report is %d bytes", ErrMalformed, len(env.Report))
		}
		return env.Report[snpReportDataOffset : snpReportDataOffset+64], nil
	case evidence.KindTDX:
		defer func() {
			if p := recover(); p != nil {
				rd, err = nil, fmt.Errorf("%w: parsing TDX quote: panic: %v", tdx.ErrMalformed, p)
			}
		}()
		q, err := tdxabi.QuoteToProto(env.Report)
		if err != nil {
			return nil, fmt.Errorf("%w: parsing TDX quote: %w", tdx.ErrMalformed, err)
		}
		v4, ok := q.(*tdxpb.QuoteV4)
		if !ok || len(v4.GetTdQuoteBody().GetReportData()) != 64 {
			return nil, fmt.Errorf("%w: unsupported TDX quote format %T", tdx.ErrMalformed, q)
		}
		return v4.GetTdQuoteBody().GetReportData(), nil
	}
	return nil, fmt.Errorf("TEE kind %q: %w", env.TEE, evidence.ErrUnknownKind)
}

func isReportDataErr(err error) bool {
	return errors.Is(err, snp.ErrReportData) || errors.Is(err, tdx.ErrReportData)
}
