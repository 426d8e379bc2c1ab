package main

import (
	"bufio"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// results holds every measurement of a run: for each benchmark key
// ("floor.P384Verify", "server.Release/core"), one sample per execution.
type results map[string][]sample

// sample is one execution of a benchmark: the round it ran in and its
// values by unit ("ns/op", "MB/s", "cpu-ns/op", ...). Our suites run in
// rounds 0 to count-1; the floor run before round r is round r, so that
// round r of ours lies between floor rounds r and r+1.
type sample struct {
	round  int
	values map[string]float64
}

// procSuffix is the -GOMAXPROCS suffix of a benchmark name.
var procSuffix = regexp.MustCompile(`-\d+$`)

// parseOutput adds the benchmark lines of a test binary's output (package
// directory pkg, run in round) to r and returns how many it found.
func (r results) parseOutput(pkg, out string, round int) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// BenchmarkName-2  <iterations>  <value> <unit>  [<value> <unit>]...
		if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		s := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				s = nil
				break
			}
			s[f[i+1]] = v
		}
		if s == nil {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		key := path.Base(pkg) + "." + name
		r[key] = append(r[key], sample{round: round, values: s})
		n++
	}
	return n
}

// values returns every measurement of key in unit.
func (r results) values(key, unit string) []float64 {
	var out []float64
	for _, s := range r[key] {
		if v, ok := s.values[unit]; ok {
			out = append(out, v)
		}
	}
	return out
}

// valueAt returns the measurement of key in unit in round.
func (r results) valueAt(key, unit string, round int) (float64, bool) {
	for _, s := range r[key] {
		if v, ok := s.values[unit]; ok && s.round == round {
			return v, true
		}
	}
	return 0, false
}

// floorAround is a floor benchmark's value for our round: the mean of the
// floor runs just before and just after it, or the one that exists.
func (r results) floorAround(key, unit string, round int) (float64, bool) {
	before, okBefore := r.valueAt(key, unit, round)
	after, okAfter := r.valueAt(key, unit, round+1)
	switch {
	case okBefore && okAfter:
		return (before + after) / 2, true
	case okBefore:
		return before, true
	case okAfter:
		return after, true
	}
	return 0, false
}

// median returns the median of vs and whether there was any value.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// stat is the median and range of one benchmark's measurements in a unit.
type stat struct {
	median, min, max float64
	n                int
}

func (r results) stat(key, unit string) (stat, bool) {
	vs := r.values(key, unit)
	m, ok := median(vs)
	if !ok {
		return stat{}, false
	}
	return stat{median: m, min: slices.Min(vs), max: slices.Max(vs), n: len(vs)}, true
}

// keys returns the benchmark keys in order: floor first, then ours, each
// sorted.
func (r results) keys() []string {
	var floor, ours []string
	for k := range r {
		if strings.HasPrefix(k, "floor.") {
			floor = append(floor, k)
		} else {
			ours = append(ours, k)
		}
	}
	slices.Sort(floor)
	slices.Sort(ours)
	return append(floor, ours...)
}
