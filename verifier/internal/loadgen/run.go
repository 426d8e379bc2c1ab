package loadgen

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// Steps of a flow, in order. StepEvidence is the generator's own work
// (signing the report and the quotes), measured so that one can see it is
// not the bottleneck.
const (
	StepChallenge = "challenge"
	StepEvidence  = "evidence"
	StepAttest    = "attest"
	StepRelease   = "release"
)

// Steps returns the step names in flow order.
func Steps() []string { return []string{StepChallenge, StepEvidence, StepAttest, StepRelease} }

// Config configures Run.
type Config struct {
	// Client talks to the verifier. Required.
	Client *Client
	// Signer is the simulated secure processor. Required.
	Signer *sim.Signer
	// Image is the boot history of the agents; nil: NewImage(EventLog).
	Image *Image
	// Kind is the envelope's TEE kind; empty: sim-sev-snp. (sev-snp sends
	// the same simulated reports labelled as hardware ones: a verifier must
	// deny every one, which loads its denial path.)
	Kind evidence.Kind
	// Concurrency is the number of agents, each running flows one after
	// the other. Required.
	Concurrency int
	// Requests is the number of flows in all; zero: run for Duration.
	Requests int
	// Duration is how long new flows are started when Requests is zero.
	Duration time.Duration
	// Rate, when positive, makes the load open: flows are due at evenly
	// spaced times, Rate per second in all, and each is taken by the next
	// free agent. A flow's latency runs from its due time, so a flow that
	// waited for a free agent counts its wait (no coordinated omission).
	// Zero: closed loop, each agent starts its next flow at once.
	Rate float64
	// ReleaseKey names the key each flow has released with its token and
	// unwraps; empty: no release step.
	ReleaseKey string
	// ExpectedKey is the key material every release must unwrap to; nil:
	// every release must unwrap to the same key as the first one.
	ExpectedKey []byte
	// RSSPID is the verifier process whose RSS is sampled; zero: none.
	RSSPID int
	// RSSEvery is the sampling interval; zero: 250 ms.
	RSSEvery time.Duration
	// Proc reads /proc.
	Proc ProcFS
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

func (c *Config) validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("no verifier client"))
	}
	if c.Signer == nil {
		errs = append(errs, errors.New("no simulated signer"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: want at least 1", c.Concurrency))
	}
	switch {
	case c.Requests < 0:
		errs = append(errs, fmt.Errorf("requests %d: want at least 1", c.Requests))
	case c.Requests == 0 && c.Duration <= 0:
		errs = append(errs, errors.New("give a number of requests or a duration"))
	case c.Requests > 0 && c.Duration > 0:
		errs = append(errs, errors.New("give a number of requests or a duration, not both"))
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate %v: want a positive number of flows per second, or 0 for a closed loop", c.Rate))
	}
	switch c.Kind {
	case "":
		c.Kind = evidence.KindSimSNP
	case evidence.KindSimSNP, evidence.KindSNP:
	default:
		errs = append(errs, fmt.Errorf("TEE kind %q: the generator signs sim-sev-snp reports (or labels them sev-snp)", c.Kind))
	}
	if len(errs) > 0 {
		return fmt.Errorf("configuring load: %w", errors.Join(errs...))
	}
	if c.RSSEvery <= 0 {
		c.RSSEvery = 250 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Latency summarizes durations, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// StepReport is the latency of every attempt of a step (successful or
// not) and its failures by code.
type StepReport struct {
	Latency
	Errors map[string]int `json:"errors"`
}

// Report is the outcome of Run.
type Report struct {
	// TEE is the envelope kind sent.
	TEE string `json:"tee"`
	// Concurrency is the number of agents.
	Concurrency int `json:"concurrency"`
	// Rate is the offered load of an open-loop run, flows per second;
	// zero for a closed loop.
	Rate float64 `json:"rate_per_second,omitempty"`
	// Release tells whether flows included the key release.
	Release bool `json:"release"`
	// SetupSeconds is the time it took to make the agents' keys.
	SetupSeconds float64 `json:"setup_seconds"`
	// ElapsedSeconds runs from the first flow's start to the last flow's
	// end.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Flows counts the flows attempted; Successes and Failures split them.
	Flows     int `json:"flows"`
	Successes int `json:"successes"`
	Failures  int `json:"failures"`
	// Throughput is successful flows per second.
	Throughput float64 `json:"throughput_per_second"`
	// Flow is the latency of the successful flows.
	Flow Latency `json:"flow"`
	// Steps maps a step name to its report.
	Steps map[string]*StepReport `json:"steps"`
	// Errors counts failed flows by code: the verifier's "error" field, a
	// transport failure class, or one of the generator's codes.
	Errors map[string]int `json:"errors"`
	// ErrorExamples holds one full error message per code.
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
	// RSS is the verifier's sampled memory, when a process was given.
	RSS *RSSStats `json:"verifier_rss,omitempty"`
	// VerifierCPUSeconds is the CPU time the verifier process used during
	// the run (user + system), when a process was given.
	VerifierCPUSeconds float64 `json:"verifier_cpu_seconds,omitempty"`
	// GeneratorCPUSeconds is the CPU time this process used during the
	// run: the cost of the load itself (the same process as the verifier
	// when it runs in-process, as in tests).
	GeneratorCPUSeconds float64 `json:"generator_cpu_seconds"`
	// Token is the first token issued (for --save-token); never printed.
	Token string `json:"-"`
}

// workerStats is one agent's record, merged at the end.
type workerStats struct {
	steps     map[string][]time.Duration
	stepErrs  map[string]map[string]int
	flows     []time.Duration
	attempted int
	errors    map[string]int
	examples  map[string]string
	token     string
}

func newWorkerStats() *workerStats {
	w := &workerStats{steps: map[string][]time.Duration{}, stepErrs: map[string]map[string]int{},
		errors: map[string]int{}, examples: map[string]string{}}
	for _, s := range Steps() {
		w.stepErrs[s] = map[string]int{}
	}
	return w
}

// Run makes Concurrency agents, then runs flows (challenge → evidence →
// attest → release and unwrap) until Requests flows were started or
// Duration passed, and reports throughput, latencies, errors and the
// verifier's RSS. A flow stops at its first failure. Cancelling ctx stops
// early; the flows finished so far are reported.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	img := cfg.Image
	if img == nil {
		var err error
		if img, err = NewImage(EventLog); err != nil {
			return nil, err
		}
	}
	setup := time.Now()
	agents, err := makeAgents(ctx, cfg, img)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		TEE: string(cfg.Kind), Concurrency: cfg.Concurrency, Rate: cfg.Rate, Release: cfg.ReleaseKey != "",
		SetupSeconds: time.Since(setup).Seconds(),
	}
	cfg.Log.Info("agents ready", "count", len(agents), "setup", time.Since(setup).Round(time.Millisecond))

	var sampler *rssSampler
	stopSampler := func() {}
	samplerDone := make(chan struct{})
	if cfg.RSSPID > 0 {
		sampler = &rssSampler{proc: cfg.Proc, pid: cfg.RSSPID, every: cfg.RSSEvery}
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stopSampler = cancel
		go func() { defer close(samplerDone); sampler.run(sctx) }()
	} else {
		close(samplerDone)
	}

	var (
		claimed  atomic.Int64
		deadline time.Time
		released = releasedKey{key: bytes.Clone(cfg.ExpectedKey)}
	)
	cpu := func(pid int) time.Duration {
		d, err := cfg.Proc.CPU(pid)
		if err != nil {
			cfg.Log.Debug("reading CPU time", "err", err)
		}
		return d
	}
	self := os.Getpid()
	genCPU, verCPU := cpu(self), time.Duration(0)
	if cfg.RSSPID > 0 {
		verCPU = cpu(cfg.RSSPID)
	}
	start := time.Now()
	if cfg.Requests == 0 {
		deadline = start.Add(cfg.Duration)
	}
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if cfg.Requests > 0 {
			return claimed.Add(1) <= int64(cfg.Requests)
		}
		return time.Now().Before(deadline)
	}
	// next returns when the agent's next flow is due, false when no
	// flow is left.
	next := func() (time.Time, bool) {
		if !more() {
			return time.Time{}, false
		}
		return time.Now(), true
	}
	if cfg.Rate > 0 {
		due := schedule(ctx, start, cfg.Rate, more)
		next = func() (time.Time, bool) {
			t, ok := <-due
			return t, ok
		}
	}
	stats := make([]*workerStats, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		stats[i] = newWorkerStats()
		wg.Go(func() {
			for {
				t, ok := next()
				if !ok {
					return
				}
				runFlow(ctx, cfg, a, stats[i], &released, t)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep.GeneratorCPUSeconds = (cpu(self) - genCPU).Seconds()
	if cfg.RSSPID > 0 {
		rep.VerifierCPUSeconds = (cpu(cfg.RSSPID) - verCPU).Seconds()
	}
	stopSampler()
	<-samplerDone

	rep.ElapsedSeconds = elapsed.Seconds()
	merge(rep, stats)
	if elapsed > 0 {
		rep.Throughput = float64(rep.Successes) / elapsed.Seconds()
	}
	if sampler != nil {
		r := sampler.result()
		rep.RSS = &r
	}
	return rep, nil
}

// schedule sends the due time of flow k, start + k/rate, when it is due,
// while more allows another flow. A send waits for a free agent; the due
// times stay on schedule meanwhile. The channel is closed at the end.
func schedule(ctx context.Context, start time.Time, rate float64, more func() bool) <-chan time.Time {
	due := make(chan time.Time)
	go func() {
		defer close(due)
		for k := 0; more(); k++ {
			t := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
			if d := time.Until(t); d > 0 {
				timer := time.NewTimer(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
					timer.Stop()
					return
				}
			}
			select {
			case due <- t:
			case <-ctx.Done():
				return
			}
		}
	}()
	return due
}

// makeAgents creates the agents in parallel (RSA key generation dominates).
func makeAgents(ctx context.Context, cfg Config, img *Image) ([]*Agent, error) {
	agents := make([]*Agent, cfg.Concurrency)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range agents {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			a, err := NewAgent(i, cfg.Kind, cfg.Signer, img)
			agents[i] = a
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("creating agents: %w", err)
	}
	return agents, nil
}

// releasedKey is the expected key, or the first one unwrapped; every key
// unwrapped must equal it.
type releasedKey struct {
	mu  sync.Mutex
	key []byte
}

func (r *releasedKey) check(key []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.key == nil {
		r.key = bytes.Clone(key)
		return nil
	}
	if subtle.ConstantTimeCompare(r.key, key) != 1 {
		return ErrMismatch
	}
	return nil
}

// runFlow runs one flow, due at flowStart, and records it. A flow cut short
// by ctx is not recorded.
func runFlow(ctx context.Context, cfg Config, a *Agent, w *workerStats, released *releasedKey, flowStart time.Time) {
	fail := func(step string, err error) {
		if ctx.Err() != nil {
			return
		}
		code := Code(err)
		w.attempted++
		w.errors[code]++
		w.stepErrs[step][code]++
		if _, ok := w.examples[code]; !ok {
			w.examples[code] = err.Error()
		}
	}
	timed := func(step string, f func() error) error {
		t := time.Now()
		err := f()
		if ctx.Err() == nil {
			w.steps[step] = append(w.steps[step], time.Since(t))
		}
		if err != nil {
			fail(step, err)
		}
		return err
	}
	var (
		nonce []byte
		body  []byte
		token string
	)
	if timed(StepChallenge, func() (err error) { nonce, err = cfg.Client.Challenge(ctx); return err }) != nil {
		return
	}
	if timed(StepEvidence, func() (err error) {
		if body, err = a.Evidence(nonce); err != nil {
			err = &genError{err}
		}
		return err
	}) != nil {
		return
	}
	if timed(StepAttest, func() (err error) { token, err = cfg.Client.Attest(ctx, body); return err }) != nil {
		return
	}
	if cfg.ReleaseKey != "" {
		if timed(StepRelease, func() error {
			jwe, err := cfg.Client.Release(ctx, cfg.ReleaseKey, token)
			if err != nil {
				return err
			}
			key, err := a.Unwrap(jwe)
			if err != nil {
				return err
			}
			return released.check(key)
		}) != nil {
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	w.attempted++
	w.flows = append(w.flows, time.Since(flowStart))
	if w.token == "" {
		w.token = token
	}
}

// genError marks a failure of the generator itself.
type genError struct{ err error }

func (e *genError) Error() string { return "generating evidence: " + e.err.Error() }
func (e *genError) Unwrap() error { return e.err }

func merge(rep *Report, stats []*workerStats) {
	rep.Steps = map[string]*StepReport{}
	rep.Errors = map[string]int{}
	rep.ErrorExamples = map[string]string{}
	steps := map[string][]time.Duration{}
	var flows []time.Duration
	for _, w := range stats {
		rep.Flows += w.attempted
		flows = append(flows, w.flows...)
		for s, d := range w.steps {
			steps[s] = append(steps[s], d...)
		}
		for code, n := range w.errors {
			rep.Errors[code] += n
		}
		for code, ex := range w.examples {
			if _, ok := rep.ErrorExamples[code]; !ok {
				rep.ErrorExamples[code] = ex
			}
		}
		if rep.Token == "" {
			rep.Token = w.token
		}
	}
	for _, s := range Steps() {
		if s == StepRelease && !rep.Release {
			continue
		}
		sr := &StepReport{Latency: summarize(steps[s]), Errors: map[string]int{}}
		for _, w := range stats {
			for code, n := range w.stepErrs[s] {
				sr.Errors[code] += n
			}
		}
		rep.Steps[s] = sr
	}
	rep.Successes = len(flows)
	rep.Failures = rep.Flows - rep.Successes
	rep.Flow = summarize(flows)
}

// summarize computes nearest-rank percentiles.
func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return ms(s[max(i, 0)])
	}
	return Latency{
		Count: len(s),
		Mean:  ms(sum / time.Duration(len(s))),
		P50:   rank(0.50),
		P90:   rank(0.90),
		P99:   rank(0.99),
		Max:   ms(s[len(s)-1]),
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }
