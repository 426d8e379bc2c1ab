package cli

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/term"
)

// progress reports how far a long step has got: on a terminal a bar redrawn
// in place, otherwise one line every 10%, so logs stay readable.
type progress struct {
	w     io.Writer
	tty   bool
	label string
	last  int // last percentage shown; -1: none yet
	open  bool
}

// barWidth is the number of cells of the terminal bar.
const barWidth = 30

func newProgress(w io.Writer, label string) *progress {
	return &progress{w: w, tty: isTerminal(w), label: label, last: -1}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// update shows done of total bytes.
func (p *progress) update(done, total int64) {
	if total <= 0 {
		return
	}
	done = min(max(done, 0), total)
	pct := int(done * 100 / total)
	if p.tty {
		if pct == p.last {
			return
		}
		p.last = pct
		fill := int(done * barWidth / total)
		fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %s/%s", p.label, strings.Repeat("#", fill), strings.Repeat("-", barWidth-fill),
			pct, mib(done), mib(total))
		p.open = true
		if done == total {
			p.finish()
		}
		return
	}
	step := pct / 10 * 10
	if step == p.last {
		return
	}
	p.last = step
	fmt.Fprintf(p.w, "%s: %d%% (%s of %s)\n", p.label, pct, mib(done), mib(total))
}

// finish ends the bar's line, if one is open.
func (p *progress) finish() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
