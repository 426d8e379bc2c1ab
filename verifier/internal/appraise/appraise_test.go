package appraise

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/tdx"
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
		// Even when its message reads exactly as a join's.
		"multi-wrap read as a join": {err: fmt.Errorf("%w\n%w", errA, errB), want: []string{"a failed\nb failed"}},
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

// sprQuoteForFuzz is a recorded Intel-signed TDX quote, a seed that reaches
// the quote parser's far end.
func sprQuoteForFuzz(f *testing.F) []byte {
	b, err := os.ReadFile("../../../shared/tee/tdx/testdata/tdx_prod_quote_SPR_E4.dat")
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzRawReportData feeds hostile reports to the binding check, which
// parses them before any signature is verified.
func FuzzRawReportData(f *testing.F) {
	f.Add([]byte("tdx"), []byte{})
	f.Add([]byte("sev-snp"), make([]byte, evidence.SNPReportSize))
	f.Add([]byte("tdx"), make([]byte, 0x3FC))
	f.Add([]byte("tdx"), sprQuoteForFuzz(f))
	f.Fuzz(func(t *testing.T, kind, report []byte) {
		env := &evidence.Envelope{TEE: evidence.Kind(kind), Report: report}
		rd, err := rawReportData(env)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, tdx.ErrMalformed) && !errors.Is(err, evidence.ErrUnknownKind) {
				t.Fatalf("rawReportData error %v wraps no sentinel", err)
			}
			if err := checkReportData(env, [64]byte{}); err == nil {
				t.Fatal("checkReportData accepted a report rawReportData refuses")
			}
			return
		}
		if len(rd) != 64 {
			t.Fatalf("REPORT_DATA of %d bytes", len(rd))
		}
		// The binding holds for exactly the report's own REPORT_DATA.
		want := [64]byte(rd)
		if err := checkReportData(env, want); err != nil {
			t.Fatalf("checkReportData refused the report's own REPORT_DATA: %v", err)
		}
		want[len(want)-1] ^= 1
		if err := checkReportData(env, want); !errors.Is(err, ErrBinding) {
			t.Fatalf("checkReportData with another REPORT_DATA = %v, want ErrBinding", err)
		}
	})
}
