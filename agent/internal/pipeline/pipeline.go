// Package pipeline runs the agent's boot flow as an ordered list of stages.
//
// Each stage does one thing (mount the kernel filesystems, load modules,
// bring up the network, find the disks, attest, release the key, open the
// disks, switch to the OS root) and either succeeds or stops the flow. Stages
// share state through whatever the caller closes over or embeds in its stage
// types; the pipeline itself only orders them, times them and names the one
// that failed.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Stage is one step of the boot flow.
type Stage interface {
	// Name is a short lower-case word naming the stage in progress and
	// failure lines ("mount", "network", "attest").
	Name() string
	// Run does the stage's work. It reports what it did with p.Stepf and
	// returns an error that says what failed and why (never secrets).
	Run(ctx context.Context, p Progress) error
}

// Progress receives a stage's progress lines.
type Progress interface {
	// Stepf reports one thing done, as a short line.
	Stepf(format string, args ...any)
}

// Func adapts a function to a Stage.
func Func(name string, run func(ctx context.Context, p Progress) error) Stage {
	return funcStage{name: name, run: run}
}

type funcStage struct {
	name string
	run  func(ctx context.Context, p Progress) error
}

func (s funcStage) Name() string                              { return s.name }
func (s funcStage) Run(ctx context.Context, p Progress) error { return s.run(ctx, p) }

// Failure is the error Run returns when a stage fails.
type Failure struct {
	// Stage names the stage that failed.
	Stage string
	// Err is the stage's error.
	Err error
	// Completed names the stages that succeeded, in order.
	Completed []string
	// Took is how long the failed stage ran.
	Took time.Duration
}

// Error says where and why: "at STAGE: REASON".
func (f *Failure) Error() string { return fmt.Sprintf("at %s: %v", f.Stage, f.Err) }

// Unwrap returns the stage's error.
func (f *Failure) Unwrap() error { return f.Err }

// ErrStageName is returned for a stage without a name.
var ErrStageName = errors.New("pipeline: stage without a name")

// Run runs the stages in order until one fails or ctx ends. It returns nil
// when every stage succeeded, and otherwise a *Failure. A stage that panics
// fails with the panic as its error, so the caller's failure path still runs.
func Run(ctx context.Context, stages []Stage, p Progress, now func() time.Time) error {
	var done []string
	for _, s := range stages {
		name := s.Name()
		if name == "" {
			return &Failure{Stage: "pipeline", Err: ErrStageName, Completed: done}
		}
		start := now()
		err := ctx.Err()
		if err == nil {
			err = runStage(ctx, s, p)
		}
		if err != nil {
			return &Failure{Stage: name, Err: err, Completed: done, Took: now().Sub(start)}
		}
		done = append(done, name)
	}
	return nil
}

// ErrPanic marks a stage that panicked.
var ErrPanic = errors.New("stage panicked")

func runStage(ctx context.Context, s Stage, p Progress) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrPanic, r)
		}
	}()
	return s.Run(ctx, p)
}
