package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/confidant-cvm/confidant/shared/termsafe"
)

// WriteJSON writes the report as one indented JSON document, in pure ASCII
// (shared/termsafe: error codes and examples come from the verifier).
func WriteJSON(w io.Writer, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		_, err = w.Write(append(termsafe.JSON(b), '\n'))
	}
	if err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}

// WriteText writes the report for people.
func WriteText(w io.Writer, rep *Report) error {
	ew := &errWriter{w: w}
	release := ""
	if rep.Release {
		release = " with key release"
	}
	load := "closed loop"
	if rep.Rate > 0 {
		load = fmt.Sprintf("open loop at %.1f flows/s", rep.Rate)
	}
	ew.printf("%d flows%s, %s evidence, %d agents, %s, %.2f s (agent setup %.2f s)\n",
		rep.Flows, release, rep.TEE, rep.Concurrency, load, rep.ElapsedSeconds, rep.SetupSeconds)
	ew.printf("succeeded %d, failed %d, throughput %.1f flows/s\n\n", rep.Successes, rep.Failures, rep.Throughput)

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tcount\tmean\tp50\tp90\tp99\tmax\terrors\t")
	row := func(name string, l Latency, errs int) {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t\n", name, l.Count, l.Mean, l.P50, l.P90, l.P99, l.Max, errs)
	}
	for _, s := range Steps() {
		sr, ok := rep.Steps[s]
		if !ok {
			continue
		}
		name := s
		if s == StepEvidence {
			name = "evidence (generator)"
		}
		n := 0
		for _, c := range sr.Errors {
			n += c
		}
		row(name, sr.Latency, n)
	}
	row("full flow (successes)", rep.Flow, rep.Failures)
	tw.Flush()

	if len(rep.Errors) > 0 {
		ew.printf("\nerrors by code:\n")
		codes := slices.Sorted(maps.Keys(rep.Errors))
		for _, c := range codes {
			ew.printf("  %-32s %d\n", termsafe.Escape(c), rep.Errors[c])
			if ex := rep.ErrorExamples[c]; ex != "" {
				ew.printf("    e.g. %s\n", termsafe.Clip(ex, 300))
			}
		}
	}
	ew.printf("\nCPU: generator %.2f s", rep.GeneratorCPUSeconds)
	if rep.VerifierCPUSeconds > 0 {
		ew.printf(", verifier %.2f s", rep.VerifierCPUSeconds)
		if rep.Successes > 0 {
			ew.printf(" (%.2f ms per successful flow)", 1000*rep.VerifierCPUSeconds/float64(rep.Successes))
		}
	}
	ew.printf("\n")
	if r := rep.RSS; r != nil {
		ew.printf("verifier RSS")
		if r.PID > 0 {
			ew.printf(" (pid %d, %d samples)", r.PID, r.Samples)
		}
		if r.Samples > 0 {
			ew.printf(": start %s, mean %s, max %s, end %s", mib(r.StartBytes), mib(r.MeanBytes), mib(r.MaxBytes), mib(r.EndBytes))
		}
		if r.Error != "" {
			ew.printf(" [%s]", termsafe.Escape(r.Error))
		}
		ew.printf("\n")
	}
	return ew.err
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
