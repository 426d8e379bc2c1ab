package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

type record struct{ lines []string }

func (r *record) Stepf(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

var errBoom = errors.New("boom")

func TestRun(t *testing.T) {
	var ran []string
	ok := func(name string) Stage {
		return Func(name, func(_ context.Context, p Progress) error {
			ran = append(ran, name)
			p.Stepf("%s done", name)
			return nil
		})
	}
	fail := func(name string, err error) Stage {
		return Func(name, func(context.Context, Progress) error { ran = append(ran, name); return err })
	}
	panics := Func("panics", func(context.Context, Progress) error { panic("oops") })
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := map[string]struct {
		ctx           context.Context
		stages        []Stage
		wantRan       []string
		wantStage     string
		wantCompleted []string
		wantErr       error
	}{
		"all succeed":     {stages: []Stage{ok("a"), ok("b")}, wantRan: []string{"a", "b"}},
		"empty":           {},
		"stops at first":  {stages: []Stage{ok("a"), fail("b", errBoom), ok("c")}, wantRan: []string{"a", "b"}, wantStage: "b", wantCompleted: []string{"a"}, wantErr: errBoom},
		"panic is error":  {stages: []Stage{ok("a"), panics, ok("c")}, wantRan: []string{"a"}, wantStage: "panics", wantCompleted: []string{"a"}, wantErr: ErrPanic},
		"nameless":        {stages: []Stage{ok("a"), ok("")}, wantRan: []string{"a"}, wantStage: "pipeline", wantCompleted: []string{"a"}, wantErr: ErrStageName},
		"canceled before": {ctx: canceled, stages: []Stage{ok("a")}, wantStage: "a", wantErr: context.Canceled},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ran = nil
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			var rec record
			err := Run(ctx, tt.stages, &rec, time.Now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(ran, tt.wantRan) {
				t.Errorf("ran %q, want %q", ran, tt.wantRan)
			}
			if tt.wantErr == nil {
				return
			}
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("error %T is not a *Failure", err)
			}
			if f.Stage != tt.wantStage || !slices.Equal(f.Completed, tt.wantCompleted) {
				t.Errorf("failure %+v, want stage %s completed %q", f, tt.wantStage, tt.wantCompleted)
			}
		})
	}
}
