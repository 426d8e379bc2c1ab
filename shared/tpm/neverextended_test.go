package tpm

import (
	"strings"
	"testing"
)

func TestNeverExtended(t *testing.T) {
	zeros, ones := strings.Repeat("0", 64), strings.Repeat("f", 64)
	for _, tt := range []struct {
		i    int
		v    string
		want bool
	}{
		{0, zeros, true},
		{16, zeros, true},
		{23, zeros, true},
		{17, ones, true},
		{22, ones, true},
		{17, zeros, false}, // a DRTM PCR reset by a late launch: kept
		{0, ones, false},
		{23, ones, false},
		{0, strings.Repeat("0", 63) + "3", false}, // locality 3 start-up
		{10, "", false},
	} {
		if got := NeverExtended(tt.i, tt.v); got != tt.want {
			t.Errorf("NeverExtended(%d, %.8s…) = %v, want %v", tt.i, tt.v, got, tt.want)
		}
	}
}
