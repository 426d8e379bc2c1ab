package appraise

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/confidant-cvm/confidant/shared/evidence"
)

var (
	errA = errors.New("a failed")
	errB = errors.New("b failed")
)

func TestSplitErrors(t *testing.T) {
	tests := map[string]struct {
		err  error
		want []string
	}{
		"nil":    {err: nil, want: nil},
		"single": {err: errA, want: []string{"a failed"}},
		"join":   {err: errors.Join(errA, errB), want: []string{"a failed", "b failed"}},
		"nested join": {err: errors.Join(errA, errors.Join(errB, errors.New("c"))),
			want: []string{"a failed", "b failed", "c"}},
		// fmt.Errorf with two %w keeps its message whole.
		"multi-wrap": {err: fmt.Errorf("%w: parsing: %w", errA, errB), want: []string{"a failed: parsing: b failed"}},
		"wrapped join": {err: wrapEach("verifying", errors.Join(errA, errB)),
			want: []string{"verifying: a failed", "verifying: b failed"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, e := range splitErrors(tt.err) {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	we := wrapEach("verifying", errors.Join(errA, errB))
	if !errors.Is(we, errA) || !errors.Is(we, errB) {
		t.Fatal("wrapEach lost a sentinel")
	}
}

func TestDeniedError(t *testing.T) {
	de := denied(nil, errA, fmt.Errorf("x: %w", errB))
	if !errors.Is(de, ErrDenied) || !errors.Is(de, errA) || !errors.Is(de, errB) {
		t.Fatal("DeniedError does not match its sentinels")
	}
	if got := Reasons(fmt.Errorf("wrapped: %w", de)); !slices.Equal(got, []string{"a failed", "x: b failed"}) {
		t.Fatalf("Reasons = %q", got)
	}
}

func TestCheckReportData(t *testing.T) {
	want := evidence.ReportData([]byte("rd"))
	report := make([]byte, evidence.SNPReportSize)
	copy(report[snpReportDataOffset:], want[:])
	if err := checkReportData(&evidence.Envelope{TEE: evidence.KindSimSNP, Report: report}, want); err != nil {
		t.Fatal(err)
	}
	report[snpReportDataOffset+63] ^= 1
	if err := checkReportData(&evidence.Envelope{TEE: evidence.KindSNP, Report: report}, want); !errors.Is(err, ErrBinding) {
		t.Fatalf("got %v, want ErrBinding", err)
	}
	if err := checkReportData(&evidence.Envelope{TEE: evidence.KindTDX, Report: []byte("short")}, want); err == nil {
		t.Fatal("garbage TDX quote accepted")
	}
}

// FuzzRawReportData feeds hostile reports to the binding check, which
// parses them before any signature is verified.
func FuzzRawReportData(f *testing.F) {
	f.Add([]byte("tdx"), []byte{})
	f.Add([]byte("sev-snp"), make([]byte, evidence.SNPReportSize))
	f.Add([]byte("tdx"), make([]byte, 0x3FC))
	f.Fuzz(func(t *testing.T, kind, report []byte) {
		env := &evidence.Envelope{TEE: evidence.Kind(kind), Report: report}
		_ = checkReportData(env, [64]byte{})
	})
}
