// Command benchreport runs Confidant's benchmarks and the raw-cryptography
// floor (shared/floor) in one interleaved sequence on the same machine and
// writes BENCHMARKS.md: the machine, the exact commands, every result and
// each result as a ratio to its floor. scripts/bench-report.sh runs it.
//
//	go run ./integration/cmd/benchreport [-count 3] [-out BENCHMARKS.md] [-suites REGEXP] [-raw FILE]
//
// Each package's test binary is built once (CGO_ENABLED=1: the TPM
// simulator needs cgo). Then -count rounds run; each round runs every suite
// of ours once, and the floor runs before the first round, between rounds
// and after the last, so that both see the same machine state. Medians are
// reported. The generated part of the output file lies between two marker
// comments; the rest of the file is kept.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	count := flag.Int("count", 3, "rounds of our benchmarks (the floor runs count+1 times)")
	out := flag.String("out", "BENCHMARKS.md", "report to write, relative to the repository root")
	suites := flag.String("suites", "", "run only our suites whose package matches this regexp (the floor always runs)")
	raw := flag.String("raw", "", "also write the raw benchmark output to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, *count, *out, *suites, *raw)
	if errors.Is(err, errRunsFailed) {
		fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
		os.Exit(2)
	}
}

// errRunsFailed means the report was written but some runs failed.
var errRunsFailed = errors.New("some benchmark runs failed; the report lists them")

func run(ctx context.Context, count int, out, only, rawFile string) error {
	if count < 1 {
		return fmt.Errorf("count %d: want at least 1", count)
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	selected, err := selectSuites(only)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "benchreport-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	info := runInfo{
		date:       time.Now().UTC().Format("2006-01-02 15:04 MST"),
		commit:     commit(ctx, root),
		cpuModel:   cpuModel(),
		goVersion:  strings.TrimSpace(output(ctx, root, "go", "version")),
		numCPU:     runtime.NumCPU(),
		gomaxprocs: runtime.GOMAXPROCS(0),
		rounds:     count,
	}

	// Build every test binary before measuring anything.
	bins, err := buildTests(ctx, root, tmp, selected, &info)
	if err != nil {
		return err
	}

	var rawOut strings.Builder
	res := results{}
	runSuite := func(s suite, round int) {
		args := []string{"-test.run", "^$", "-test.bench", s.bench, "-test.benchmem", "-test.count", "1", "-test.benchtime", s.benchtime}
		cmd := exec.CommandContext(ctx, bins[s.pkg], args...)
		cmd.Dir = filepath.Join(root, s.pkg)
		fmt.Fprintf(os.Stderr, "running %s %s\n", s.pkg, s.bench)
		b, err := cmd.CombinedOutput()
		fmt.Fprintf(&rawOut, "### %s %s\n%s\n", s.pkg, s.bench, b)
		n := res.parseOutput(s.pkg, string(b), round)
		if err != nil || n == 0 {
			info.failures = append(info.failures, fmt.Sprintf("%s %s: %v, %d results", s.pkg, s.bench, err, n))
			fmt.Fprintf(os.Stderr, "%s", b)
		}
	}
	for _, s := range append([]suite{floorSuite}, selected...) {
		info.commands = append(info.commands, fmt.Sprintf("(cd %s && $T/%s -test.run '^$' -test.bench '%s' -test.benchmem -test.count 1 -test.benchtime %s)",
			s.pkg, filepath.Base(bins[s.pkg]), s.bench, s.benchtime))
	}
	info.commands = append(info.commands, fmt.Sprintf("# order: floor, then [%d suites of ours, floor] × %d", len(selected), count))

	info.loadStart = loadAverage()
	runSuite(floorSuite, 0)
	for round := range count {
		fmt.Fprintf(os.Stderr, "round %d of %d\n", round+1, count)
		for _, s := range selected {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			runSuite(s, round)
		}
		runSuite(floorSuite, round+1)
	}
	info.loadEnd = loadAverage()

	if err := write(root, out, rawFile, rawOut.String(), info, res); err != nil {
		return err
	}
	if len(info.failures) > 0 {
		return errRunsFailed
	}
	return nil
}

// selectSuites returns our suites whose package matches only ("": all).
func selectSuites(only string) ([]suite, error) {
	if only == "" {
		return ourSuites, nil
	}
	re, err := regexp.Compile(only)
	if err != nil {
		return nil, fmt.Errorf("parsing -suites: %w", err)
	}
	var selected []suite
	for _, s := range ourSuites {
		if re.MatchString(s.pkg) {
			selected = append(selected, s)
		}
	}
	return selected, nil
}

// buildTests builds the test binary of the floor suite and of every
// selected suite's package into tmp, recording the commands in info.
func buildTests(ctx context.Context, root, tmp string, selected []suite, info *runInfo) (map[string]string, error) {
	bins := map[string]string{}
	for _, s := range append([]suite{floorSuite}, selected...) {
		if _, ok := bins[s.pkg]; ok {
			continue
		}
		bin := filepath.Join(tmp, strings.ReplaceAll(s.pkg, "/", "_")+".test")
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./"+s.pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=1")
		info.commands = append(info.commands, fmt.Sprintf("CGO_ENABLED=1 go test -c -o $T/%s ./%s", filepath.Base(bin), s.pkg))
		fmt.Fprintf(os.Stderr, "building %s\n", s.pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %w\n%s", s.pkg, err, b)
		}
		bins[s.pkg] = bin
	}
	return bins, nil
}

// write saves the raw output (if rawFile is set) and splices the report
// into out.
func write(root, out, rawFile, raw string, info runInfo, res results) error {
	if rawFile != "" {
		if err := os.WriteFile(rawFile, []byte(raw), 0o644); err != nil {
			return err
		}
	}
	path := filepath.Join(root, out)
	doc, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.WriteFile(path, []byte(splice(string(doc), render(info, res))), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", path)
	return nil
}

// repoRoot is the directory holding go.mod, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func output(ctx context.Context, dir, name string, args ...string) string {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return string(b)
}

// commit names the checked-out commit and whether the tree has changes.
func commit(ctx context.Context, root string) string {
	c := strings.TrimSpace(output(ctx, root, "git", "rev-parse", "--short", "HEAD"))
	if st := output(ctx, root, "git", "status", "--porcelain"); st != "unknown" && strings.TrimSpace(st) != "" {
		c += " with uncommitted changes"
	}
	return c
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
