package flow

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/agent/internal/boot"
	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/console"
)

// moduleRig is an agent whose module loader records finit_module calls on
// module files in a temporary tree, with a fake /proc/modules.
type moduleRig struct {
	a     *Agent
	out   *syncBuffer
	proc  string
	mu    sync.Mutex
	calls []string
	// policy is the scheduling policy of the thread each module loaded on.
	policy map[string]uint32
	// hold, if set, blocks the loading of modules whose name it holds until
	// the channel is closed.
	hold map[string]chan struct{}
	fail map[string]error
}

func newModuleRig(t *testing.T, names ...string) *moduleRig {
	t.Helper()
	dir := t.TempDir()
	var list []string
	for _, n := range names {
		p := filepath.Join(dir, "lib/modules/6.1/kernel", n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, p, "module")
		list = append(list, p)
	}
	modulesFile := filepath.Join(dir, "modules")
	writeTestFile(t, modulesFile, strings.Join(list, "\n")+"\n")
	r := &moduleRig{out: &syncBuffer{}, proc: filepath.Join(dir, "proc-modules"), hold: map[string]chan struct{}{}, fail: map[string]error{}, policy: map[string]uint32{}}
	r.a = New(Options{Console: console.New(r.out, console.Uptime), Log: slog.New(slog.DiscardHandler), ProcModules: r.proc})
	r.a.st.Config = &config.Config{ModulesFile: modulesFile}
	r.a.modules = boot.NewModuleLoaderWith(func(fd int, _ string, _ int) error {
		name := boot.ModuleName(filepath.Base(fdPath(fd)))
		attr, err := unix.SchedGetAttr(0, 0)
		r.mu.Lock()
		r.calls = append(r.calls, name)
		if err == nil {
			r.policy[name] = attr.Policy
		}
		hold, fail := r.hold[name], r.fail[name]
		r.mu.Unlock()
		if hold != nil {
			<-hold
		}
		return fail
	})
	return r
}

// fdPath is the file an open descriptor names.
func fdPath(fd int) string {
	p, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return p
}

func (r *moduleRig) live(names ...string) {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + " 16384 0 - Live 0x0000000000000000\n")
	}
	if err := os.WriteFile(r.proc, []byte(b.String()), 0o644); err != nil {
		panic(err)
	}
}

var imageModules = []string{
	"drivers/virtio/virtio_ring.ko", "drivers/net/virtio_net.ko", "fs/configfs/configfs.ko",
	"drivers/md/dm-mod.ko", "drivers/md/dm-crypt.ko", "crypto/xts.ko", "arch/x86/crypto/aesni-intel.ko",
}

// TestModulesInBackground: the modules stage loads the early modules and
// returns while the disks' modules still load; unlock waits for them.
func TestModulesInBackground(t *testing.T) {
	r := newModuleRig(t, imageModules...)
	release := make(chan struct{})
	r.hold["aesni_intel"] = release
	r.live("virtio_ring", "virtio_net", "configfs", "dm_mod", "dm_crypt", "xts", "aesni_intel")
	stage := make(chan error, 1)
	go func() { stage <- r.a.loadModules(context.Background(), r.a.con) }()
	select {
	case err := <-stage:
		if err != nil {
			t.Fatalf("modules stage: %v", err)
		}
	case <-time.After(time.Minute): // a guard against hanging, not a time limit
		close(release)
		t.Fatal("the modules stage waited for the disks' modules")
	}
	out := r.out.String()
	if !strings.Contains(out, "loaded 3 modules (0 already loaded), live in /proc/modules: virtio_ring virtio_net configfs; "+
		"loading in the background for the disks: dm_mod dm_crypt xts aesni_intel") {
		t.Errorf("modules stage said:\n%s", out)
	}
	// The stage returned with aesni_intel still loading.
	select {
	case <-r.a.lateModules.done:
		t.Fatal("the background loading finished although aesni_intel is held")
	default:
	}
	close(release)
	if err := r.a.awaitLateModules(context.Background(), r.a.con); err != nil {
		t.Fatalf("awaitLateModules: %v", err)
	}
	if !strings.Contains(r.out.String(), "unlock: modules loaded in the background, live in /proc/modules: dm_mod dm_crypt xts aesni_intel") {
		t.Errorf("unlock said:\n%s", r.out.String())
	}
	if got := strings.Join(r.calls, " "); got != "virtio_ring virtio_net configfs dm_mod dm_crypt xts aesni_intel" {
		t.Errorf("loaded %s, want the list in order", got)
	}
	// The disks' modules loaded on an idle-priority thread, the others on
	// the flow's.
	for name, want := range map[string]uint32{"virtio_ring": unix.SCHED_NORMAL, "configfs": unix.SCHED_NORMAL, "dm_mod": unix.SCHED_IDLE, "aesni_intel": unix.SCHED_IDLE} {
		if got, ok := r.policy[name]; !ok || got != want {
			t.Errorf("%s loaded with scheduling policy %d (known %v), want %d", name, got, ok, want)
		}
	}
	if len(r.a.st.Modules) != 7 {
		t.Errorf("state holds %d modules, want 7", len(r.a.st.Modules))
	}
	if err := r.a.awaitLateModules(context.Background(), r.a.con); err != nil {
		t.Errorf("awaiting again: %v", err)
	}
}

func TestModulesInBackgroundFail(t *testing.T) {
	t.Run("finit fails", func(t *testing.T) {
		r := newModuleRig(t, imageModules...)
		r.fail["dm_crypt"] = unix.ENOEXEC
		r.live("virtio_ring", "virtio_net", "configfs", "dm_mod")
		if err := r.a.loadModules(context.Background(), r.a.con); err != nil {
			t.Fatalf("modules stage: %v", err)
		}
		err := r.a.awaitLateModules(context.Background(), r.a.con)
		if !errors.Is(err, unix.ENOEXEC) || !strings.Contains(err.Error(), "dm-crypt.ko") {
			t.Errorf("awaitLateModules = %v, want dm-crypt's ENOEXEC", err)
		}
	})
	t.Run("not live", func(t *testing.T) {
		r := newModuleRig(t, imageModules...)
		r.live("virtio_ring", "virtio_net", "configfs", "dm_mod", "dm_crypt", "xts")
		if err := r.a.loadModules(context.Background(), r.a.con); err != nil {
			t.Fatalf("modules stage: %v", err)
		}
		if err := r.a.awaitLateModules(context.Background(), r.a.con); !errors.Is(err, boot.ErrModuleNotLive) || !strings.Contains(err.Error(), "aesni_intel") {
			t.Errorf("awaitLateModules = %v, want aesni_intel not live", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		r := newModuleRig(t, imageModules...)
		hold := make(chan struct{})
		defer close(hold)
		r.hold["dm_mod"] = hold
		r.live("virtio_ring", "virtio_net", "configfs")
		if err := r.a.loadModules(context.Background(), r.a.con); err != nil {
			t.Fatalf("modules stage: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.a.awaitLateModules(ctx, r.a.con); !errors.Is(err, context.Canceled) {
			t.Errorf("awaitLateModules = %v, want context.Canceled", err)
		}
	})
	t.Run("nothing deferred", func(t *testing.T) {
		r := newModuleRig(t, imageModules[:3]...)
		r.live("virtio_ring", "virtio_net", "configfs")
		if err := r.a.loadModules(context.Background(), r.a.con); err != nil {
			t.Fatalf("modules stage: %v", err)
		}
		if r.a.lateModules != nil || strings.Contains(r.out.String(), "background") {
			t.Errorf("a background loading for no module:\n%s", r.out.String())
		}
		if err := r.a.awaitLateModules(context.Background(), r.a.con); err != nil {
			t.Error(err)
		}
	})
}
