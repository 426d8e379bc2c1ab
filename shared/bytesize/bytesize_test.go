package bytesize

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// The two parsers this package replaced, kept as oracles: Parse must
// accept exactly what each accepted, with the same value and message.

// agentParseSize is agent/internal/config's ParseSize (cap 1 EiB).
func agentParseSize(v string) (int64, error) {
	num := strings.TrimSpace(v)
	unit := strings.TrimLeft(num, "0123456789")
	num = num[:len(num)-len(unit)]
	unit = strings.TrimSpace(unit)
	var shift uint
	switch strings.TrimSuffix(strings.TrimSuffix(unit, "iB"), "B") {
	case "":
		if unit != "" && unit != "B" {
			return 0, fmt.Errorf("size %q: unknown unit %q", v, unit)
		}
	case "K", "k":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	case "T":
		shift = 40
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q", v, unit)
	}
	if num == "" {
		return 0, fmt.Errorf("size %q: want a whole number of bytes, optionally with K, M, G or T", v)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > (1<<60)>>shift {
		return 0, fmt.Errorf("size %q: too large", v)
	}
	return n << shift, nil
}

// hostdParseSize is hostd/internal/spec's ParseSize (cap 4 EiB).
func hostdParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{
		{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40},
		{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40},
	}
	num, shift := s, uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != num {
		return 0, fmt.Errorf("size %q: want a whole number with an optional unit KiB, MiB, GiB or TiB", s)
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n << shift, nil
}

var (
	agentOpts = Options{Max: 1 << 60, Loose: true}
	hostdOpts = Options{}
)

func sameAs(t *testing.T, name, in string, got int64, gotErr error, want int64, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) || got != want ||
		gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Errorf("%s %q: Parse = %d, %v; the old parser gave %d, %v", name, in, got, gotErr, want, wantErr)
	}
}

var corpus = []string{
	"", "0", "00", "-0", "+1", "4096", "0010", "1K", "1k", "1KiB", "1kiB", "1KB", "1kB", "1KBiB", "1KiBB",
	"512M", "512MiB", "512MB", "512m", "2G", "2 GiB", " 8 ", "1T", "1TiB", "7B", "1B", "1iB", "1BiB", "1BB",
	"M", "MiB", "-1", "-1MiB", "+1MiB", "1 MiB", "1gib", "1.5G", "1P", "1 2", "0x10", "1GG", "1MiBK",
	"99999999999999999999", "99999999999999999999K", "1048576T", "1048577T", "4194304TiB", "4194305TiB",
	"99999999999TiB", "9223372036854775807", "4611686018427387904", "4611686018427387905", "1\t\nG",
}

func TestParseMatchesTheOldParsers(t *testing.T) {
	for _, in := range corpus {
		got, err := Parse(in, agentOpts)
		want, wantErr := agentParseSize(in)
		sameAs(t, "agent", in, got, err, want, wantErr)
		got, err = Parse(in, hostdOpts)
		want, wantErr = hostdParseSize(in)
		sameAs(t, "hostd", in, got, err, want, wantErr)
	}
}

func TestParse(t *testing.T) {
	tests := map[string]struct {
		in      string
		opts    Options
		want    int64
		wantErr bool
	}{
		"strict unit":        {in: "512MiB", want: 512 << 20},
		"strict short unit":  {in: "4G", want: 4 << 30},
		"strict space":       {in: "1 MiB", wantErr: true},
		"strict zero lead":   {in: "01M", wantErr: true},
		"strict lower k":     {in: "1k", wantErr: true},
		"strict cap":         {in: "4194305TiB", wantErr: true},
		"loose space":        {in: " 2 GiB ", opts: Options{Loose: true}, want: 2 << 30},
		"loose B":            {in: "512MB", opts: Options{Loose: true}, want: 512 << 20},
		"loose lower k":      {in: "1k", opts: Options{Loose: true}, want: 1 << 10},
		"max is inclusive":   {in: "1M", opts: Options{Max: 1 << 20}, want: 1 << 20},
		"max refuses beyond": {in: "1025K", opts: Options{Max: 1 << 20}, wantErr: true},
		"no number":          {in: "K", opts: Options{Loose: true}, wantErr: true},
		"negative":           {in: "-1", opts: Options{Loose: true}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.in, tc.opts)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("Parse(%q, %+v) = %d, %v", tc.in, tc.opts, got, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range corpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s, agentOpts)
		want, wantErr := agentParseSize(s)
		sameAs(t, "agent", s, got, err, want, wantErr)
		got, err = Parse(s, hostdOpts)
		want, wantErr = hostdParseSize(s)
		sameAs(t, "hostd", s, got, err, want, wantErr)
	})
}
