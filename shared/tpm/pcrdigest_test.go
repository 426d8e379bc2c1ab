package tpm

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"testing"

	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
)

// TestCheckPCRDigest covers the PCR selection and digest checks that
// checkQuote makes in place of go-tpm-tools' quote.Verify.
func TestCheckPCRDigest(t *testing.T) {
	val := func(b byte) []byte { return sha256Of(string([]byte{b})) }
	digest := func(vals ...[]byte) []byte {
		h := sha256.New()
		for _, v := range vals {
			h.Write(v)
		}
		return h.Sum(nil)
	}
	carried := func(idx ...uint32) *tpmpb.PCRs {
		p := &tpmpb.PCRs{Hash: tpmpb.HashAlgo_SHA256, Pcrs: map[uint32][]byte{}}
		for _, i := range idx {
			p.Pcrs[i] = val(byte(i))
		}
		return p
	}
	info := func(alg tpm2.Algorithm, d []byte, idx ...int) *tpm2.QuoteInfo {
		return &tpm2.QuoteInfo{PCRSelection: tpm2.PCRSelection{Hash: alg, PCRs: idx}, PCRDigest: d}
	}
	tests := map[string]struct {
		info    *tpm2.QuoteInfo
		pcrs    *tpmpb.PCRs
		wantErr error
	}{
		"match":              {info: info(tpm2.AlgSHA256, digest(val(0), val(7)), 7, 0), pcrs: carried(0, 7)},
		"digest differs":     {info: info(tpm2.AlgSHA256, digest(val(7), val(0)), 0, 7), pcrs: carried(0, 7), wantErr: ErrPCRDigest},
		"PCR not carried":    {info: info(tpm2.AlgSHA256, digest(val(0), val(7)), 0, 7), pcrs: carried(0, 8), wantErr: ErrPCRDigest},
		"extra PCR carried":  {info: info(tpm2.AlgSHA256, digest(val(0)), 0), pcrs: carried(0, 7), wantErr: ErrPCRDigest},
		"other bank":         {info: info(tpm2.AlgSHA1, digest(val(0)), 0), pcrs: carried(0), wantErr: ErrPCRDigest},
		"PCR 24":             {info: info(tpm2.AlgSHA256, digest(val(0), val(24)), 0, 24), pcrs: carried(0, 24), wantErr: ErrPCRDigest},
		"no values":          {info: info(tpm2.AlgSHA256, digest(), 0), pcrs: nil, wantErr: ErrMalformed},
		"negative selection": {info: info(tpm2.AlgSHA256, digest(val(0)), -1), pcrs: carried(0), wantErr: ErrPCRDigest},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := checkPCRDigest(tt.info, tt.pcrs, crypto.SHA256)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("checkPCRDigest() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
