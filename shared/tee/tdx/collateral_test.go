package tdx

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"
)

// Recorded Intel PCS responses for the FMSPC of sprQuote (50806f000000),
// from go-tdx-guest's testing/testdata; the issuer chains are the response
// headers go-tdx-guest's testing package serves with them.
var (
	//go:embed testdata/sample_tcbInfo_response
	pcsTCBInfo []byte
	//go:embed testdata/tcbinfo_issuer_chain
	pcsTCBInfoChain string
	//go:embed testdata/sample_qeIdentity_response
	pcsQEIdentity []byte
	//go:embed testdata/qeidentity_issuer_chain
	pcsQEIdentityChain string
	//go:embed testdata/pckcrl
	pcsPCKCRL []byte
	//go:embed testdata/pckcrl_issuer_chain
	pcsPCKCRLChain string
	//go:embed testdata/rootcrl.der
	pcsRootCRL []byte
)

type pcsResponse struct {
	header map[string][]string
	body   []byte
}

// fakePCS serves recorded PCS responses by URL and counts requests.
type fakePCS struct {
	responses map[string]pcsResponse
	calls     atomic.Int32
}

func (f *fakePCS) Get(url string) (map[string][]string, []byte, error) {
	f.calls.Add(1)
	r, ok := f.responses[url]
	if !ok {
		return nil, nil, fmt.Errorf("404: %s", url)
	}
	return r.header, r.body, nil
}

// recordedPCS serves the recorded collateral; edit may change the bodies.
func recordedPCS(edit func(tcbInfo, qeIdentity []byte) ([]byte, []byte)) *fakePCS {
	tcbInfo, qeIdentity := bytes.Clone(pcsTCBInfo), bytes.Clone(pcsQEIdentity)
	if edit != nil {
		tcbInfo, qeIdentity = edit(tcbInfo, qeIdentity)
	}
	return &fakePCS{responses: map[string]pcsResponse{
		pcs.TcbInfoURL("50806f000000"): {
			header: map[string][]string{pcs.TcbInfoIssuerChainPhrase: {pcsTCBInfoChain}},
			body:   tcbInfo,
		},
		pcs.QeIdentityURL(): {
			header: map[string][]string{pcs.SgxQeIdentityIssuerChainPhrase: {pcsQEIdentityChain}},
			body:   qeIdentity,
		},
		pcs.PckCrlURL("platform"): {
			header: map[string][]string{pcs.SgxPckCrlIssuerChainPhrase: {pcsPCKCRLChain}},
			body:   pcsPCKCRL,
		},
		"https://certificates.trustedservices.intel.com/IntelSGXRootCA.der": {body: pcsRootCRL},
	}}
}

// No positive case exists: the recorded TCB info (Intel-signed, so it
// cannot be edited) has no TCB level that matches the recorded quote, just
// as go-tdx-guest's own TestNegativeRawQuoteVerifyWithCollateral shows.
func TestVerifyWithCollateral(t *testing.T) {
	tests := map[string]struct {
		quote     []byte
		getter    *fakePCS
		now       time.Time
		wantErr   []error
		notErr    []error
		wantCalls func(int32) bool
	}{
		"recorded collateral, platform TCB not listed": {
			quote: sprQuote, getter: recordedPCS(nil), now: sprNow,
			wantErr: []error{ErrTCB}, notErr: []error{ErrCollateral, ErrSignature, ErrChain},
		},
		"PCS unreachable": {
			quote: sprQuote, getter: &fakePCS{}, now: sprNow,
			wantErr: []error{ErrCollateral}, notErr: []error{ErrSignature, ErrChain},
		},
		"TCB info tampered": {
			quote: sprQuote, now: sprNow,
			getter: recordedPCS(func(tcb, qe []byte) ([]byte, []byte) {
				return bytes.Replace(tcb, []byte(`"tcbEvaluationDataNumber":15`), []byte(`"tcbEvaluationDataNumber":16`), 1), qe
			}),
			wantErr: []error{ErrCollateral}, notErr: []error{ErrTCB},
		},
		"QE identity tampered": {
			quote: sprQuote, now: sprNow,
			getter: recordedPCS(func(tcb, qe []byte) ([]byte, []byte) {
				return tcb, bytes.Replace(qe, []byte(`"isvprodid":2`), []byte(`"isvprodid":3`), 1)
			}),
			wantErr: []error{ErrCollateral}, notErr: []error{ErrTCB},
		},
		"TCB info expired": {
			quote: sprQuote, getter: recordedPCS(nil), now: time.Date(2023, time.August, 1, 0, 0, 0, 0, time.UTC),
			wantErr: []error{ErrCollateral}, notErr: []error{ErrTCB},
		},
		"bad signature: no collateral fetched": {
			quote: flip(sprQuote, offSignature, 0x01), getter: recordedPCS(nil), now: sprNow,
			wantErr: []error{ErrSignature}, notErr: []error{ErrCollateral, ErrTCB},
			wantCalls: func(n int32) bool { return n == 0 },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Verify(tc.quote, Options{Now: at(tc.now), Getter: tc.getter})
			if err == nil {
				t.Fatalf("Verify() = %+v, nil; want an error", c)
			}
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("Verify() = %v\nwant it to wrap %v", err, want)
				}
			}
			for _, not := range tc.notErr {
				if errors.Is(err, not) {
					t.Errorf("Verify() = %v\nwant it not to wrap %v", err, not)
				}
			}
			if tc.wantCalls != nil && !tc.wantCalls(tc.getter.calls.Load()) {
				t.Errorf("getter called %d times", tc.getter.calls.Load())
			}
		})
	}
}
