package loadgen

import (
	"math"
	"slices"
	"time"
)

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
