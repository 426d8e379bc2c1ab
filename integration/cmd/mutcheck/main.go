// Command mutcheck removes each check of the verifier checklist in turn,
// in a copy of the tree, and runs the tests named for it: every removal
// must make a test fail. It prints a Markdown table and exits 1 when a
// removal went unnoticed. scripts/mutation-check.sh runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/integration/internal/mutation"
)

func main() {
	repo := flag.String("repo", ".", "the module to copy")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "confidant-mutcheck"), "where the copy goes (emptied first)")
	worktree := flag.Bool("worktree", false, "copy the working tree instead of HEAD")
	only := flag.String("only", "", "run only mutations whose item or name matches this regular expression")
	explore := flag.Bool("explore", false, "run each package's whole test suite instead of the named tests, to find which tests notice")
	locate := flag.Bool("locate", false, "only check that every snippet is found once in the source")
	timeout := flag.Duration("timeout", 6*time.Minute, "bound on one go test run")
	out := flag.String("out", "", "also write the table to this file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ok, err := run(ctx, *repo, *dir, *worktree, *only, *explore, *locate, *timeout, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutcheck:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(ctx context.Context, repo, dir string, worktree bool, only string, explore, locateOnly bool,
	timeout time.Duration, out string) (bool, error) {
	ms := mutation.Checklist()
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return false, fmt.Errorf("-only: %w", err)
		}
		var kept []mutation.Mutation
		for _, m := range ms {
			if re.MatchString(m.Item) || re.MatchString(m.Name) {
				kept = append(kept, m)
			}
		}
		ms = kept
	}
	if explore {
		for i := range ms {
			ms[i].Run = "."
		}
	}
	start := time.Now()
	if err := mutation.Copy(ctx, repo, dir, worktree); err != nil {
		return false, err
	}
	r := &mutation.Runner{Dir: dir, Timeout: timeout, Env: []string{"CGO_ENABLED=1"},
		Log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "mutcheck: "+f+"\n", a...) }}
	if locateOnly {
		return r.Locate(ms), nil
	}
	bad := r.Baseline(ctx, ms)
	var results []mutation.Result
	for i, m := range ms {
		if reason, ok := bad[m.Pkg]; ok {
			results = append(results, mutation.Result{Mutation: m, Outcome: mutation.BaselineFailed, Detail: reason})
			continue
		}
		res := r.Run(ctx, m)
		fmt.Fprintf(os.Stderr, "mutcheck: [%d/%d] %s: %s: %s (%s) %s\n", i+1, len(ms), m.Item, m.Name, res.Outcome,
			res.Elapsed.Round(time.Second), firstLine(res.Detail))
		results = append(results, res)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
	}
	w := io.Writer(os.Stdout)
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return false, err
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	return mutation.WriteTable(w, results, time.Since(start)), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
