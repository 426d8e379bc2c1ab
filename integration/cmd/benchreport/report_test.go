package main

import (
	"math"
	"strings"
	"testing"
)

const sampleOutput = `goos: linux
goarch: amd64
pkg: github.com/confidant-cvm/confidant/shared/floor
cpu: AMD EPYC
BenchmarkP384Verify-2       	     793	   1000000 ns/op	     808 B/op	      17 allocs/op
BenchmarkP256Verify-2       	    9968	    100000 ns/op	     576 B/op	      10 allocs/op
BenchmarkES256Sign-2        	   35587	     50000 ns/op	    6064 B/op	      59 allocs/op
BenchmarkES256Verify-2      	   15492	    100000 ns/op	     576 B/op	      10 allocs/op
BenchmarkAESXTSAllCores-2   	     378	   2673066 ns/op	 400.00 MB/s	    5550 B/op	       0 allocs/op
BenchmarkNotAResult-2       	 fails	   here
PASS
`

func TestParseOutput(t *testing.T) {
	r := results{}
	if n := r.parseOutput("shared/floor", sampleOutput, 0); n != 5 {
		t.Fatalf("parsed %d results, want 5", n)
	}
	r.parseOutput("verifier/internal/server", "BenchmarkRelease/core-2 \t 100 \t 900000 ns/op\nBenchmarkAttestParallel-2 10 3000000 ns/op 2000000 cpu-ns/op\n", 0)
	tests := map[string]struct {
		key, unit string
		want      float64
	}{
		"ns/op":      {key: "floor.P384Verify", unit: "ns/op", want: 1e6},
		"MB/s":       {key: "floor.AESXTSAllCores", unit: "MB/s", want: 400},
		"allocs":     {key: "floor.ES256Sign", unit: "allocs/op", want: 59},
		"sub":        {key: "server.Release/core", unit: "ns/op", want: 9e5},
		"custom":     {key: "server.AttestParallel", unit: "cpu-ns/op", want: 2e6},
		"no -procs":  {key: "floor.P384Verify-2", unit: "ns/op"},
		"not parsed": {key: "floor.NotAResult", unit: "ns/op"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := median(r.values(tt.key, tt.unit))
			if ok != (tt.want != 0) || got != tt.want {
				t.Errorf("median(%s, %s) = %v, %v; want %v", tt.key, tt.unit, got, ok, tt.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := map[string]struct {
		in   []float64
		want float64
		ok   bool
	}{
		"empty": {},
		"one":   {in: []float64{3}, want: 3, ok: true},
		"odd":   {in: []float64{9, 1, 5}, want: 5, ok: true},
		"even":  {in: []float64{4, 1, 3, 2}, want: 2.5, ok: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got, ok := median(tt.in); got != tt.want || ok != tt.ok {
				t.Errorf("median(%v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	r := results{}
	// Floor rounds 0, 1, 2 with P-384 at 1, 3 and 2 ms.
	r.parseOutput("shared/floor", sampleOutput, 0)
	r.parseOutput("shared/floor", strings.ReplaceAll(sampleOutput, "1000000 ns/op", "3000000 ns/op"), 1)
	r.parseOutput("shared/floor", strings.ReplaceAll(sampleOutput, "1000000 ns/op", "2000000 ns/op"), 2)
	r.parseOutput("verifier/internal/token", "BenchmarkRelyingPartyVerify/fast-2 1 125000 ns/op\n", 0)
	r.parseOutput("shared/luks2", "BenchmarkEncryptImage-2 1 1 ns/op 300.0 MB/s\n", 1)
	find := func(key string) comparison {
		for _, c := range comparisons {
			if c.key == key {
				return c
			}
		}
		t.Fatalf("no comparison for %s", key)
		return comparison{}
	}
	rp := r.evaluate(find("token.RelyingPartyVerify/fast"))
	if !rp.ok || rp.floor != 1e5 || math.Abs(rp.times()-1.25) > 1e-9 || math.Abs(rp.throughput()-0.8) > 1e-9 {
		t.Errorf("RP row = %+v, times %v, throughput %v", rp, rp.times(), rp.throughput())
	}
	luks := r.evaluate(find("luks2.EncryptImage"))
	if !luks.ok || math.Abs(luks.throughput()-0.75) > 1e-9 {
		t.Errorf("LUKS2 row = %+v, throughput %v", luks, luks.throughput())
	}
	// Each round is divided by the floor around it: round 0 lies between
	// P-384 = 1 and 3 ms (2 ms), round 1 between 3 and 2 ms (2.5 ms); P-256
	// and ES256 sign add 150 µs.
	r.parseOutput("verifier/internal/server", "BenchmarkAttest-2 1 4300000 ns/op\n", 0)
	r.parseOutput("verifier/internal/server", "BenchmarkAttest-2 1 5300000 ns/op\n", 1)
	full := r.evaluate(find("server.Attest"))
	if !full.ok || full.floor != (2.15e6+2.65e6)/2 || math.Abs(full.times()-2) > 1e-9 {
		t.Errorf("appraisal row = %+v", full)
	}
	if row := r.evaluate(find("snp.VerifyMilan")); row.ok || row.missing != "snp.VerifyMilan" {
		t.Errorf("missing result evaluated: %+v", row)
	}
	r.parseOutput("shared/tee/snp", "BenchmarkVerifyMilan-2 1 3000000 ns/op\n", 0)
	if row := r.evaluate(find("snp.VerifyMilan")); row.ok || !strings.Contains(row.missing, "RSA-4096") {
		t.Errorf("result without its floor evaluated: %+v", row)
	}
}

func TestRenderThroughput(t *testing.T) {
	r := results{}
	r.parseOutput("shared/floor", sampleOutput+"BenchmarkAppraisalFloorParallel-2 1 2000000 ns/op\n", 0)
	// 1.15 ms of floor per appraisal on 2 cores: 1739/s. Ours: 1000/s.
	r.parseOutput("verifier/internal/server", "BenchmarkAttestParallel-2 1 1000000 ns/op 2000000 cpu-ns/op\n", 0)
	var b strings.Builder
	renderThroughput(&b, runInfo{numCPU: 2}, r)
	for _, want := range []string{"| 1000 | |", "| 1739 | 57 % (target ≥ 60 %: **missed** by 3 points) |", "| 500 | 200 % |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("throughput table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestRenderAndSplice(t *testing.T) {
	r := results{}
	r.parseOutput("shared/floor", sampleOutput, 0)
	r.parseOutput("verifier/internal/token", "BenchmarkRelyingPartyVerify/parse-2 1 200000 ns/op\n", 0)
	block := render(runInfo{numCPU: 2, rounds: 1, commands: []string{"cmd"}}, r)
	for _, want := range []string{"| relying-party token verify, jwx jwt.Parse (cached JWKS) | 200.0 µs | ES256 verify = ", "**missed** by 30 points", "| floor.P384Verify | 1.00 ms |"} {
		if !strings.Contains(block, want) {
			t.Errorf("report lacks %q:\n%s", want, block)
		}
	}
	doc := "# Benchmarks\n\nhand-written\n\n" + beginMarker + "\nold\n" + endMarker + "\n\n## Notes\nkept\n"
	got := splice(doc, block)
	if strings.Contains(got, "\nold\n") || !strings.Contains(got, "hand-written") || !strings.Contains(got, "## Notes\nkept") ||
		strings.Count(got, beginMarker) != 1 {
		t.Errorf("splice = %s", got)
	}
	if got := splice("# Benchmarks\n", block); !strings.HasPrefix(got, "# Benchmarks\n\n"+beginMarker) {
		t.Errorf("splice into a file without markers = %q", got[:40])
	}
}
