// Command bootbench times guest boots under QEMU TCG in the two boot modes,
// paired in one run: UEFI with Secure Boot (OVMF SMM build, the signed UKI
// on an ESP, the production path) against SeaBIOS direct kernel boot (the
// development mode). Each round boots one guest of each, alternating which
// goes first, and the ratio is taken round by round, so that the machine's
// drift cancels out. It prints, per mode, the median and range of:
//
//   - boot: from `vm start` to the guest powering itself off after its OS
//     ran (firmware, kernel, agent, the demo OS's check);
//   - agent: the agent's own part, from its first console line to its
//     hand-over to the OS (guest uptime stamps);
//
// and the median UEFI/SeaBIOS ratio of each.
//
//	go run ./integration/cmd/bootbench [--bin bin] [--rounds 5]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/confidant-cvm/confidant/integration/internal/harness"
)

func main() {
	bin := flag.String("bin", "", "directory with the four programs (default: build them)")
	rounds := flag.Int("rounds", 5, "rounds of one UEFI and one SeaBIOS boot")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *rounds); err != nil {
		fmt.Fprintf(os.Stderr, "bootbench: %v\n", err)
		os.Exit(1)
	}
}

// sample is one boot's times.
type sample struct{ boot, agent time.Duration }

func run(ctx context.Context, bin string, rounds int) (err error) {
	if rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	repo, err := harness.RepoRoot(".")
	if err != nil {
		return err
	}
	var bins harness.Binaries
	if bin != "" {
		if bin, err = filepath.Abs(bin); err != nil {
			return err
		}
		bins = harness.BinariesIn(bin)
	}
	dir, err := os.MkdirTemp("", "confidant-bootbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lab, err := harness.NewLab(ctx, harness.LabOptions{Dir: dir, Repo: repo, Bins: bins})
	if err != nil {
		return err
	}
	defer lab.Close()

	uefi, err := world(ctx, lab.NewWorld, "uefi")
	if err != nil {
		return err
	}
	direct, err := world(ctx, lab.NewDirectWorld, "seabios")
	if err != nil {
		return err
	}
	var u, d []sample
	for i := range rounds {
		order := []*harness.World{uefi, direct}
		if i%2 == 1 {
			order = []*harness.World{direct, uefi}
		}
		for _, w := range order {
			s, err := boot(ctx, lab, w, fmt.Sprintf("%s-%d", w.Name, i))
			if err != nil {
				return err
			}
			if w == uefi {
				u = append(u, s)
			} else {
				d = append(d, s)
			}
			fmt.Fprintf(os.Stderr, "round %d %-7s boot %v agent %v\n", i+1, w.Name, s.boot.Round(10*time.Millisecond), s.agent.Round(10*time.Millisecond))
		}
	}
	fmt.Printf("%d rounds, 1 vCPU, %d MiB, swtpm, TCG; medians (min – max)\n\n", rounds, harness.GuestMemoryMiB)
	fmt.Println("| part | UEFI + Secure Boot | SeaBIOS direct boot | ratio UEFI / SeaBIOS (median of the rounds' ratios) |")
	fmt.Println("|---|---|---|---|")
	for _, part := range []struct {
		name string
		get  func(sample) time.Duration
	}{{"boot (vm start to power-off)", func(s sample) time.Duration { return s.boot }},
		{"agent (first line to hand-over)", func(s sample) time.Duration { return s.agent }}} {
		var ratios []float64
		for i := range u {
			ratios = append(ratios, float64(part.get(u[i]))/float64(part.get(d[i])))
		}
		fmt.Printf("| %s | %s | %s | %.2f × |\n", part.name, stats(u, part.get), stats(d, part.get), median(ratios))
	}
	return nil
}

func world(ctx context.Context, newWorld func(string) (*harness.World, error), name string) (*harness.World, error) {
	w, err := newWorld(name)
	if err != nil {
		return nil, err
	}
	if err := w.StartVerifier(ctx); err != nil {
		return nil, err
	}
	if err := w.BuildImage(ctx, false); err != nil {
		return nil, err
	}
	return w, nil
}

// boot boots one guest of w's image and returns its times; a guest that
// does not reach its OS is an error.
func boot(ctx context.Context, lab *harness.Lab, w *harness.World, name string) (sample, error) {
	spec, err := w.Guest(name, "")
	if err != nil {
		return sample{}, err
	}
	res, err := lab.Boot(ctx, w.Dir, spec, 3*time.Minute, nil)
	if err != nil {
		return sample{}, err
	}
	b := res.Boot
	if b.Failure != nil || !b.OSInitReached {
		return sample{}, fmt.Errorf("%s did not reach its OS:\n%s", name, b.AgentText())
	}
	first, ok1 := b.FindAgent("started as PID 1")
	last, ok2 := b.FindAgent("switchroot: handing over")
	if !ok1 || !ok2 {
		return sample{}, fmt.Errorf("%s: the agent's first or hand-over line is missing:\n%s", name, b.AgentText())
	}
	agent := time.Duration((last.Uptime - first.Uptime) * float64(time.Second))
	return sample{boot: res.Took, agent: agent}, nil
}

func stats(ss []sample, get func(sample) time.Duration) string {
	var ds []float64
	for _, s := range ss {
		ds = append(ds, get(s).Seconds())
	}
	slices.Sort(ds)
	return fmt.Sprintf("%.2f s (%.2f – %.2f)", median(ds), ds[0], ds[len(ds)-1])
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
