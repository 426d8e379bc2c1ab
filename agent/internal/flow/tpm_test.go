package flow

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/agent/internal/console"
	"github.com/confidant-cvm/confidant/agent/internal/pipeline"
	"github.com/confidant-cvm/confidant/agent/internal/vtpm"
)

// TestConfigStartsTPM: the config stage starts opening the vTPM; a flow
// that fails before attest closes the device it opened.
func TestConfigStartsTPM(t *testing.T) {
	dir := t.TempDir()
	cfgPath, cmdline := filepath.Join(dir, "agent.yaml"), filepath.Join(dir, "cmdline")
	writeTestFile(t, cfgPath, "verifier: {url: http://127.0.0.1:9, allow_plain_http: true}\nkey_name: os-disk\n"+
		"os_disk: {luks_uuid: 3f1c2b6a-1111-4222-8333-444455556666}\n")
	writeTestFile(t, cmdline, "console=ttyS0\n")
	var closed bool
	opened := make(chan time.Duration, 1)
	a := New(Options{
		ConfigPath: cfgPath, CmdlinePath: cmdline,
		Console: console.New(&syncBuffer{}, console.Uptime), Log: slog.New(slog.DiscardHandler),
		Hardware: Hardware{OpenTPM: func(_ context.Context, wait time.Duration) (*vtpm.Device, error) {
			opened <- wait
			return vtpm.New(sharedTPM{ReadWriter: tpmSim, closed: &closed})
		}},
	})
	all := a.Stages()
	i := slices.IndexFunc(all, func(s pipeline.Stage) bool { return s.Name() == "config" })
	if err := pipeline.Run(context.Background(), all[i:i+1], a.con, time.Now); err != nil {
		t.Fatal(err)
	}
	select {
	case wait := <-opened:
		if wait != a.st.Config.DeviceTimeout {
			t.Errorf("OpenTPM waits %v, want the device timeout %v", wait, a.st.Config.DeviceTimeout)
		}
	case <-time.After(time.Minute): // a guard against hanging, not a time limit
		t.Fatal("the config stage did not start opening the TPM")
	}
	<-a.opening.done
	a.releaseSecrets()
	if !closed || a.opening != nil {
		t.Errorf("after a failure before attest: TPM closed %v, opening dropped %v; want both", closed, a.opening == nil)
	}
}

// TestAttestTakesOpenedTPM: attest uses the device opened ahead, and opens
// none of its own.
func TestAttestTakesOpenedTPM(t *testing.T) {
	r := newRig(t)
	var calls atomic.Int32
	open := r.hw.OpenTPM
	r.hw.OpenTPM = func(ctx context.Context, wait time.Duration) (*vtpm.Device, error) {
		calls.Add(1)
		return open(ctx, wait)
	}
	r.before = func(a *Agent) { a.startTPM(context.Background()) }
	f := r.run()
	if f.Stage != "handover" {
		t.Fatalf("failure %v\n%s", f, r.out.String())
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("OpenTPM ran %d times, want 1", n)
	}
	if !r.results.atSwitch.tpmClosed {
		t.Error("the TPM was not closed before switch_root")
	}
}

// TestTPMStillOpening: a failure while the vTPM is still being opened does
// not wait for it (a TPM that never answers must not keep the guest from
// halting); attest, had it come, would have failed with the opening's
// error.
func TestTPMStillOpening(t *testing.T) {
	release := make(chan struct{})
	errStuck := errors.New("TPM stuck")
	a := New(Options{Console: console.New(&syncBuffer{}, console.Uptime), Log: slog.New(slog.DiscardHandler),
		Hardware: Hardware{OpenTPM: func(context.Context, time.Duration) (*vtpm.Device, error) {
			<-release
			return nil, errStuck
		}}})
	a.st.Config = newRig(t).cfg
	a.startTPM(context.Background())
	o := a.opening
	a.releaseSecrets() // returns although the opening has not finished
	if a.opening != nil {
		t.Error("the opening was kept")
	}
	close(release)
	<-o.done
	if !errors.Is(o.err, errStuck) {
		t.Errorf("opening ended with %v", o.err)
	}

	// attest reports the opening's error; a cancelled context ends the wait.
	a.startTPM(context.Background())
	if _, err := a.takeTPM(context.Background()); !errors.Is(err, errStuck) {
		t.Errorf("takeTPM = %v, want the opening's error", err)
	}
	block := make(chan struct{})
	defer close(block)
	a.hw.OpenTPM = func(context.Context, time.Duration) (*vtpm.Device, error) { <-block; return nil, errStuck }
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.takeTPM(ctx); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("takeTPM with a cancelled context = %v", err)
	}
}
