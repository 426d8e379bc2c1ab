package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
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

	sampler := startSampler(ctx, cfg)
	cpuBefore := readCPU(cfg)
	start := time.Now()
	stats := runAgents(ctx, cfg, agents, flowSource(ctx, cfg, start))
	elapsed := time.Since(start)
	cpuAfter := readCPU(cfg)
	rep.GeneratorCPUSeconds = (cpuAfter.generator - cpuBefore.generator).Seconds()
	if cfg.RSSPID > 0 {
		rep.VerifierCPUSeconds = (cpuAfter.verifier - cpuBefore.verifier).Seconds()
	}
	rss := sampler.finish()

	rep.ElapsedSeconds = elapsed.Seconds()
	merge(rep, stats)
	if elapsed > 0 {
		rep.Throughput = float64(rep.Successes) / elapsed.Seconds()
	}
	rep.RSS = rss
	return rep, nil
}

// runSampler samples the verifier's RSS during a run, when a process was
// given.
type runSampler struct {
	sampler *rssSampler // nil: no process given
	stop    func()
	done    chan struct{}
}

// startSampler starts sampling cfg.RSSPID, if set, until finish.
func startSampler(ctx context.Context, cfg Config) *runSampler {
	s := &runSampler{stop: func() {}, done: make(chan struct{})}
	if cfg.RSSPID <= 0 {
		close(s.done)
		return s
	}
	s.sampler = &rssSampler{proc: cfg.Proc, pid: cfg.RSSPID, every: cfg.RSSEvery}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = cancel
	go func() { defer close(s.done); s.sampler.run(sctx) }()
	return s
}

// finish stops the sampler and returns what it saw; nil when no process
// was given.
func (s *runSampler) finish() *RSSStats {
	s.stop()
	<-s.done
	if s.sampler == nil {
		return nil
	}
	r := s.sampler.result()
	return &r
}

// cpuTimes is the CPU time used so far by this process and, when a
// process was given, by the verifier.
type cpuTimes struct {
	generator, verifier time.Duration
}

func readCPU(cfg Config) cpuTimes {
	cpu := func(pid int) time.Duration {
		d, err := cfg.Proc.CPU(pid)
		if err != nil {
			cfg.Log.Debug("reading CPU time", "err", err)
		}
		return d
	}
	t := cpuTimes{generator: cpu(os.Getpid())}
	if cfg.RSSPID > 0 {
		t.verifier = cpu(cfg.RSSPID)
	}
	return t
}

// flowSource returns next, which returns when an agent's next flow is due,
// false when no flow is left: Requests flows in all, or flows until
// Duration after start; on Rate's schedule when it is set.
func flowSource(ctx context.Context, cfg Config, start time.Time) func() (time.Time, bool) {
	var (
		claimed  atomic.Int64
		deadline time.Time
	)
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
	if cfg.Rate > 0 {
		due := schedule(ctx, start, cfg.Rate, more)
		return func() (time.Time, bool) {
			t, ok := <-due
			return t, ok
		}
	}
	return func() (time.Time, bool) {
		if !more() {
			return time.Time{}, false
		}
		return time.Now(), true
	}
}

// runAgents runs flows on every agent while next gives one, and returns
// each agent's record.
func runAgents(ctx context.Context, cfg Config, agents []*Agent, next func() (time.Time, bool)) []*workerStats {
	released := releasedKey{key: bytes.Clone(cfg.ExpectedKey)}
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
	return stats
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
