package mutation

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Locate checks that every edit's snippet is found exactly once and
// reports the stale ones; it changes nothing.
func (r *Runner) Locate(ms []Mutation) bool {
	ok := true
	for _, m := range ms {
		for _, e := range m.Edits {
			if p, err := locate(r.Dir, e); err != nil {
				ok = false
				r.logf("STALE %s: %s: %v", m.Item, m.Name, err)
			} else {
				r.logf("ok %s: %s: %s", m.Item, m.Name, strings.TrimPrefix(p, r.Dir+"/"))
			}
		}
	}
	return ok
}

// WriteTable writes results as a Markdown table with a summary line and
// reports whether every mutation was caught.
func WriteTable(w io.Writer, results []Result, total time.Duration) bool {
	fmt.Fprintln(w, "| # | checklist item | mutation | test (package: -run) | caught | failing tests / detail |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	counts := map[Outcome]int{}
	for i, res := range results {
		m := res.Mutation
		counts[res.Outcome]++
		caught, detail := "yes", firstLine(res.Detail)
		switch {
		case res.Outcome == Missed && m.SecondLine != "":
			counts[secondLine]++
			caught, detail = "no (second line)", m.SecondLine
		case res.Outcome != Caught:
			caught = "**no** (" + string(res.Outcome) + ")"
		}
		detail = strings.ReplaceAll(detail, "|", `\|`)
		if len(detail) > 160 {
			detail = detail[:160] + "…"
		}
		fmt.Fprintf(w, "| %d | %s | %s | `%s`: `%s` | %s | %s |\n", i+1, m.Item, m.Name,
			strings.TrimPrefix(m.Pkg, "./"), strings.ReplaceAll(m.Run, "|", `\|`), caught, detail)
	}
	fmt.Fprintf(w, "\n%d mutations: %d caught, %d not caught (%d of them second lines no input reaches), %d stale, %d build errors, %d with failing baselines; %s.\n",
		len(results), counts[Caught], counts[Missed], counts[secondLine], counts[Stale], counts[BuildError], counts[BaselineFailed],
		total.Round(time.Second))
	return counts[Caught]+counts[secondLine] == len(results)
}

// secondLine counts, in WriteTable, the missed mutations marked SecondLine.
const secondLine Outcome = "second line"
