package appraise

import (
	"bytes"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/tdx"
)

// TestSubjectFormats: sub is "<kind>:<launch measurement>:<host identity>"
// for every kind, so TDs of one firmware with different MRCONFIGID differ,
// as do SNP guests of one image with different HOST_DATA, real or
// simulated.
func TestSubjectFormats(t *testing.T) {
	meas, hd := strings.Repeat("ab", 48), strings.Repeat("cd", 32)
	for _, kind := range []evidence.Kind{evidence.KindSNP, evidence.KindSimSNP} {
		got := snpSubject(kind, &snp.Claims{Measurement: meas, HostData: hd, ChipID: strings.Repeat("ee", 64)})
		if want := string(kind) + ":" + meas + ":" + hd; got != want {
			t.Errorf("snpSubject(%s) = %q, want %q", kind, got, want)
		}
	}
	mrtd := bytes.Repeat([]byte{0x11}, 48)
	one := tdxSubject(&tdx.Claims{MRTD: mrtd, MRConfigID: bytes.Repeat([]byte{0x22}, 48)})
	two := tdxSubject(&tdx.Claims{MRTD: mrtd, MRConfigID: bytes.Repeat([]byte{0x33}, 48)})
	if want := "tdx:" + strings.Repeat("11", 48) + ":" + strings.Repeat("22", 48); one != want {
		t.Errorf("tdxSubject = %q, want %q", one, want)
	}
	if one == two {
		t.Error("two TDs of one firmware with different MRCONFIGID share a sub")
	}
}
