// Package mutation removes security checks from a copy of the source tree,
// one at a time, and runs the tests named for each: a check whose removal
// no test notices is a check without a test. The table of checks is
// Checklist (the verifier checklist of DESIGN.md).
package mutation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Edit replaces one exact, unique snippet of a non-test Go (or Rego)
// source file in Dir.
type Edit struct {
	// Dir is the directory, relative to the module root, holding the
	// file; the file is the only one there whose text contains Old.
	Dir string
	// File, if set, restricts the search to the file of that name in Dir.
	File string
	// Old is the check as it stands in the source; New replaces it.
	Old, New string
}

// Mutation removes one check.
type Mutation struct {
	// Item is the DESIGN.md checklist item the check implements.
	Item string
	// Name says what the mutation does.
	Name  string
	Edits []Edit
	// Pkg is the package whose tests must notice (e.g.
	// "./shared/tee/snp"), Run the go test -run pattern naming them.
	Pkg, Run string
	// SecondLine, if set, says why no test can notice this removal alone:
	// another check in front of it refuses every input that would reach
	// it. Such a mutation going unnoticed is reported, not failed.
	SecondLine string
}

// Outcome of one mutation.
type Outcome string

// Outcomes.
const (
	// Caught: the named tests failed with the check removed.
	Caught Outcome = "caught"
	// Missed: the named tests still passed.
	Missed Outcome = "NOT CAUGHT"
	// Stale: the snippet is not in the source (once), so the table needs
	// updating.
	Stale Outcome = "STALE"
	// BuildError: the mutated tree does not compile; the mutation is wrong.
	BuildError Outcome = "BUILD ERROR"
	// BaselineFailed: the named tests fail without any mutation.
	BaselineFailed Outcome = "BASELINE FAILS"
)

// Result is a mutation's outcome, with the failing tests' names when
// caught, or the reason otherwise.
type Result struct {
	Mutation Mutation
	Outcome  Outcome
	Detail   string
	Elapsed  time.Duration
}

// Runner applies mutations to a copy of the tree in Dir.
type Runner struct {
	// Dir is the copy (see Copy); it is changed and restored per mutation.
	Dir string
	// Timeout bounds one go test run.
	Timeout time.Duration
	// Env is added to go test's environment.
	Env []string
	// Log receives progress lines; nil: none.
	Log func(format string, args ...any)
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		r.Log(format, args...)
	}
}

// locate finds the one file under dir (not recursive, no _test.go) that
// contains old exactly once.
func locate(root string, e Edit) (string, error) {
	entries, err := os.ReadDir(filepath.Join(root, e.Dir))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", e.Dir, err)
	}
	var found []string
	for _, de := range entries {
		n := de.Name()
		if de.IsDir() || strings.HasSuffix(n, "_test.go") || !(strings.HasSuffix(n, ".go") || strings.HasSuffix(n, ".rego")) ||
			(e.File != "" && n != e.File) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Dir, n))
		if err != nil {
			return "", err
		}
		switch c := bytes.Count(b, []byte(e.Old)); {
		case c == 1:
			found = append(found, filepath.Join(root, e.Dir, n))
		case c > 1:
			return "", fmt.Errorf("%s/%s holds the snippet %d times", e.Dir, n, c)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("snippet found in %d files of %s: %q", len(found), e.Dir, firstLine(e.Old))
	}
	return found[0], nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// apply makes m's edits and returns a function restoring the files.
func (r *Runner) apply(m Mutation) (func(), error) {
	saved := map[string][]byte{}
	restore := func() {
		for p, b := range saved {
			_ = os.WriteFile(p, b, 0o644)
		}
	}
	for _, e := range m.Edits {
		p, err := locate(r.Dir, e)
		if err != nil {
			restore()
			return nil, err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			restore()
			return nil, err
		}
		if _, ok := saved[p]; !ok {
			saved[p] = b
		}
		if err := os.WriteFile(p, bytes.Replace(b, []byte(e.Old), []byte(e.New), 1), 0o644); err != nil {
			restore()
			return nil, err
		}
	}
	return restore, nil
}

// goTest runs go test -run pattern pkg in the copy and returns its output
// and whether it passed.
func (r *Runner) goTest(ctx context.Context, pkg, pattern string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-run", pattern, pkg)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), r.Env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), false, fmt.Errorf("go test %s -run %q: %w", pkg, pattern, ctx.Err())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return string(out), false, fmt.Errorf("running go test: %w", err)
	}
	return string(out), err == nil, nil
}

// buildFailed reports whether go test's output is a compile failure rather
// than a failing test.
func buildFailed(out string) bool {
	return strings.Contains(out, "[build failed]") || strings.Contains(out, "[setup failed]") ||
		strings.Contains(out, "build failed")
}

// failedTests lists the "--- FAIL: Name" lines of go test's output.
func failedTests(out string) []string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if n, ok := strings.CutPrefix(l, "--- FAIL: "); ok {
			n, _, _ = strings.Cut(n, " ")
			if !strings.Contains(n, "/") {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 && strings.Contains(out, "panic:") {
		names = append(names, "(panic)")
	}
	return names
}

// Baseline runs each package's named tests on the unmutated copy and
// returns the packages whose tests fail there.
func (r *Runner) Baseline(ctx context.Context, ms []Mutation) map[string]string {
	patterns := map[string][]string{}
	var order []string
	for _, m := range ms {
		if _, ok := patterns[m.Pkg]; !ok {
			order = append(order, m.Pkg)
		}
		patterns[m.Pkg] = append(patterns[m.Pkg], "(?:"+m.Run+")")
	}
	bad := map[string]string{}
	for _, pkg := range order {
		start := time.Now()
		out, ok, err := r.goTest(ctx, pkg, strings.Join(patterns[pkg], "|"))
		r.logf("baseline %s: ok=%v (%s)", pkg, ok, time.Since(start).Round(time.Second))
		if err != nil || !ok {
			bad[pkg] = fmt.Sprintf("%v %s", err, strings.Join(failedTests(out), " "))
			r.logf("%s", tail(out, 30))
		}
	}
	return bad
}

// Run applies m, runs its tests and restores the tree.
func (r *Runner) Run(ctx context.Context, m Mutation) Result {
	start := time.Now()
	res := Result{Mutation: m}
	defer func() { res.Elapsed = time.Since(start) }()
	restore, err := r.apply(m)
	if err != nil {
		res.Outcome, res.Detail = Stale, err.Error()
		return res
	}
	defer restore()
	out, ok, err := r.goTest(ctx, m.Pkg, m.Run)
	switch {
	case err != nil:
		// A hang with the check removed is noticed too, but say so.
		res.Outcome, res.Detail = Caught, err.Error()
	case ok:
		res.Outcome = Missed
	case buildFailed(out):
		res.Outcome, res.Detail = BuildError, tail(out, 15)
	default:
		res.Outcome, res.Detail = Caught, strings.Join(failedTests(out), " ")
	}
	res.Elapsed = time.Since(start)
	return res
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Copy copies the module at src into dst (emptied first): the files of
// HEAD (git archive), or with worktree the working tree's tracked and
// untracked, not ignored files.
func Copy(ctx context.Context, src, dst string, worktree bool) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if !worktree {
		cmd := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive --format=tar HEAD | tar -x -C "$2"`, "sh", src, dst)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("copying HEAD of %s: %w: %s", src, err, out)
		}
		return nil
	}
	out, err := exec.CommandContext(ctx, "git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("listing files of %s: %w", src, err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if f == "" {
			continue
		}
		info, err := os.Stat(filepath.Join(src, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return err
		}
		p := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
