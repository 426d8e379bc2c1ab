package flow

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/console"
	"github.com/confidant-cvm/confidant/agent/internal/pipeline"
)

var errDisk = errors.New("no block device with LUKS UUID x")

func TestFail(t *testing.T) {
	errHalt := errors.New("EPERM")
	tests := map[string]struct {
		cfg        *config.Config
		err        error
		shell      string
		haltErr    error
		wantReboot bool
		wantLines  []string
		wantErr    error
	}{
		"no config powers off": {
			err:       &pipeline.Failure{Stage: "config", Err: config.ErrInvalid, Completed: []string{"mount"}},
			wantLines: []string{"FAILED at config: invalid agent configuration", `"failed_stage":"config","completed":["mount"]`, `"action":"poweroff"`},
		},
		"reboot from config": {
			cfg:        &config.Config{OnFailure: config.Reboot},
			err:        &pipeline.Failure{Stage: "devices", Err: errDisk},
			wantReboot: true,
			wantLines:  []string{"FAILED at devices: no block device with LUKS UUID x", `"action":"reboot"`},
		},
		"plain error": {
			err:       errDisk,
			wantLines: []string{"FAILED at agent: no block device"},
		},
		"debug shell runs": {
			cfg:       &config.Config{OnFailure: config.PowerOff, DebugShell: true},
			err:       &pipeline.Failure{Stage: "network", Err: errDisk},
			shell:     "/bin/true",
			wantLines: []string{"FAILED at network", `"debug_shell":true`, "debug shell on the console"},
		},
		"debug shell missing": {
			cfg:       &config.Config{OnFailure: config.PowerOff, DebugShell: true},
			err:       &pipeline.Failure{Stage: "network", Err: errDisk},
			shell:     "/nonexistent/sh",
			wantLines: []string{"debug shell /nonexistent/sh not available"},
		},
		"halt refused": {
			err:       errDisk,
			haltErr:   errHalt,
			wantErr:   errHalt,
			wantLines: []string{"cannot poweroff: EPERM"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			var halted []bool
			a := New(Options{
				Console:    console.New(&out, func() time.Duration { return time.Second }),
				Log:        slog.New(slog.DiscardHandler),
				Halt:       func(reboot bool) error { halted = append(halted, reboot); return tt.haltErr },
				DebugShell: tt.shell,
			})
			a.st.Config = tt.cfg
			if err := a.Fail(tt.err); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Fail = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(halted, []bool{tt.wantReboot}) {
				t.Errorf("halt calls %v, want [%v]", halted, tt.wantReboot)
			}
			for _, w := range tt.wantLines {
				if !strings.Contains(out.String(), w) {
					t.Errorf("console lacks %q:\n%s", w, out.String())
				}
			}
			if n := strings.Count(out.String(), "FAILED at"); n != 1 {
				t.Errorf("%d FAILED lines", n)
			}
			if (tt.cfg == nil || !tt.cfg.DebugShell) && strings.Contains(out.String(), "debug shell") {
				t.Error("debug shell ran without debug_shell: true")
			}
		})
	}
}

func TestStagesOrder(t *testing.T) {
	a := New(Options{Console: console.New(&bytes.Buffer{}, console.Uptime), Log: slog.New(slog.DiscardHandler)})
	var names []string
	for _, s := range a.Stages() {
		names = append(names, s.Name())
	}
	want := []string{"mount", "config", "modules", "configfs", "network", "devices", "attest", "release", "unlock", "tempdisk", "switchroot"}
	if !slices.Equal(names, want) {
		t.Errorf("stages %q, want %q", names, want)
	}
}

func TestInMemory(t *testing.T) {
	// /dev/shm is a tmpfs on Linux; the source tree is not.
	if _, err := os.Stat("/dev/shm"); err == nil {
		if err := InMemory("/dev/shm"); err != nil {
			t.Errorf("InMemory(/dev/shm) = %v", err)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(wd, &st); err != nil || st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		t.Skipf("the source tree is in memory here (%v)", err)
	}
	if err := InMemory(wd); !errors.Is(err, ErrNotInMemory) {
		t.Errorf("InMemory(%s) = %v, want ErrNotInMemory", wd, err)
	}
	if err := InMemory("/nonexistent"); err == nil || errors.Is(err, ErrNotInMemory) {
		t.Errorf("InMemory(/nonexistent) = %v, want a statfs error", err)
	}
}

func TestStageTimesOnFailure(t *testing.T) {
	var out bytes.Buffer
	var clock time.Time
	a := New(Options{
		Console: console.New(&out, func() time.Duration { return time.Second }),
		Log:     slog.New(slog.DiscardHandler),
		Now:     func() time.Time { clock = clock.Add(100 * time.Millisecond); return clock },
		Halt:    func(bool) error { return nil },
	})
	ok := func(context.Context, pipeline.Progress) error { return nil }
	bad := func(context.Context, pipeline.Progress) error { return errDisk }
	err := a.run(context.Background(), []pipeline.Stage{a.timed("one", ok), a.timed("two", bad), a.timed("three", ok)})
	if err := a.Fail(err); err != nil {
		t.Fatal(err)
	}
	if want := "stage times: one=0.100s two=0.100s total=0.200s"; !strings.Contains(out.String(), want) {
		t.Errorf("console lacks %q:\n%s", want, out.String())
	}
}
