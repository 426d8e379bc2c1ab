package tdx

import (
	"errors"
	"testing"
)

// FuzzVerify feeds arbitrary bytes to Verify: it must return claims or an
// error, never panic, and a verified quote must keep its signature checks.
func FuzzVerify(f *testing.F) {
	f.Add(sprQuote)
	f.Add(cosQuote)
	f.Add(sprQuote[:offQEReport+0x200])
	f.Add(flip(sprQuote, offTDAttributes, 0x01))
	f.Add([]byte{4, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, quote []byte) {
		c, err := Verify(quote, Options{Now: at(sprNow)})
		if err == nil {
			if c == nil {
				t.Fatal("Verify() = nil, nil")
			}
			if c.TDAttributes.Debug {
				t.Fatal("Verify() accepted a debug TD without AllowDebug")
			}
			return
		}
		if c != nil {
			t.Fatal("Verify() returned claims with an error")
		}
		known := []error{ErrMalformed, ErrSignature, ErrChain, ErrDebug, ErrTDAttributes, ErrXFAM}
		for _, k := range known {
			if errors.Is(err, k) {
				return
			}
		}
		t.Fatalf("Verify() = %v, which wraps no sentinel error", err)
	})
}
