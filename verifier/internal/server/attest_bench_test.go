//go:build cgo && unix

package server

import (
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// BenchmarkAttestParallel is BenchmarkAttest with requests in flight on
// every core (8 per GOMAXPROCS, as many agents attest at once): its ns/op is
// wall time per appraisal, so 1e9/ns is the handler's throughput, and
// cpu-ns/op is the CPU time the process spent per appraisal (handler,
// store writer, garbage collector). The evidence (b.N envelopes, each for
// its own challenge) is made before the timer starts.
func BenchmarkAttestParallel(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	h := f.srv.Handler
	bodies := make([]string, b.N)
	for i := range bodies {
		bodies[i] = string(evidenceFor(b, f.nonce(), testguest.Options{}))
	}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := bodies[next.Add(1)-1]
			req, err := http.NewRequest(http.MethodPost, "/v1/attest", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			rec := &recorder{header: http.Header{}}
			h.ServeHTTP(rec, req)
			if rec.status != http.StatusOK {
				b.Errorf("attest: %d %s", rec.status, rec.body)
				return
			}
		}
	})
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
