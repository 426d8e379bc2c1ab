package tdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// attrAllowed are the TD_ATTRIBUTES bits a TD may have besides DEBUG;
	// the same set go-tdx-guest's validate package accepts.
	attrAllowed = attrSEPTVEDisable | attrPKS | attrPerfmon
	// xfamFixed1 bits must be set in every XFAM (x87, SSE).
	xfamFixed1 = uint64(0x00000003)
	// xfamFixed0 are the only bits XFAM may have (as in go-tdx-guest).
	xfamFixed0 = uint64(0x0006DBE7)

	teeTCBSVNSize = 16
)

// validateClaims checks the TD fields of c against opts and returns every
// failure joined. It reads only the raw byte fields of c, never the decoded
// booleans, so that a caller cannot bypass it by editing them.
func validateClaims(c *Claims, opts *Options) error {
	var errs []error
	errs = append(errs, checkTDAttributes(c.TDAttributes.Raw, opts.AllowDebug)...)
	if err := checkXFAMFixedBits(c.XFAM); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs,
		pinned(ErrReportData, "REPORT_DATA", c.ReportData, opts.ReportData),
		pinned(ErrMRTD, "MRTD", c.MRTD, opts.MRTD),
		pinned(ErrMRSEAM, "MRSEAM", c.MRSEAM, opts.MRSEAM),
		pinned(ErrXFAM, "XFAM", c.XFAM, opts.XFAM),
	)
	for i, want := range opts.RTMRs {
		errs = append(errs, pinned(ErrRTMR, fmt.Sprintf("RTMR%d", i), c.RTMRs[i], want))
	}
	if opts.MinimumTEETCBSVN != nil {
		if err := checkMinimumSVN(c.TEETCBSVN, opts.MinimumTEETCBSVN); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pinned compares a quote field with an expected value; nil want means not
// checked. A non-nil want of the wrong length never matches.
func pinned(sentinel error, name string, got, want []byte) error {
	if want == nil || bytes.Equal(got, want) {
		return nil
	}
	return fmt.Errorf("%w: quote has %s %x, want %x", sentinel, name, got, want)
}

// checkTDAttributes refuses DEBUG unless allowDebug, and any bit outside
// the known-safe set.
func checkTDAttributes(raw []byte, allowDebug bool) []error {
	if len(raw) != 8 {
		return []error{fmt.Errorf("%w: TD_ATTRIBUTES has %d bytes, want 8", ErrTDAttributes, len(raw))}
	}
	v := binary.LittleEndian.Uint64(raw)
	var errs []error
	if v&attrDebug != 0 && !allowDebug {
		errs = append(errs, fmt.Errorf("%w: TD_ATTRIBUTES %#016x has DEBUG set", ErrDebug, v))
	}
	if extra := v &^ (attrAllowed | attrDebug); extra != 0 {
		errs = append(errs, fmt.Errorf("%w: TD_ATTRIBUTES %#016x has bits %#016x set", ErrTDAttributes, v, extra))
	}
	return errs
}

func checkXFAMFixedBits(raw []byte) error {
	if len(raw) != 8 {
		return fmt.Errorf("%w: XFAM has %d bytes, want 8", ErrXFAM, len(raw))
	}
	v := binary.LittleEndian.Uint64(raw)
	if v&xfamFixed1 != xfamFixed1 {
		return fmt.Errorf("%w: XFAM %#x lacks the fixed bits %#x", ErrXFAM, v, xfamFixed1)
	}
	if extra := v &^ xfamFixed0; extra != 0 {
		return fmt.Errorf("%w: XFAM %#x has bits %#x set outside %#x", ErrXFAM, v, extra, xfamFixed0)
	}
	return nil
}

// checkMinimumSVN compares TEE_TCB_SVN with a minimum component by
// component.
func checkMinimumSVN(got, minimum []byte) error {
	if len(minimum) != teeTCBSVNSize || len(got) != teeTCBSVNSize {
		return fmt.Errorf("%w: TEE_TCB_SVN minimum has %d bytes and quote %d, want %d", ErrTCB, len(minimum), len(got), teeTCBSVNSize)
	}
	for i := range minimum {
		if got[i] < minimum[i] {
			return fmt.Errorf("%w: TEE_TCB_SVN %x is below minimum %x at component %d", ErrTCB, got, minimum, i)
		}
	}
	return nil
}
