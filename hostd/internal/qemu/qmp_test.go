package qemu

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQMPWithRealQEMU starts a machine-less QEMU and drives it over QMP.
func TestQMPWithRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qmp.sock")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-machine", "none", "-nodefaults", "-display", "none",
		"-chardev", "socket,id=qmp,path="+sock+",server=on,wait=off", "-mon", "chardev=qmp,mode=control")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

	var q *QMP
	for q == nil {
		q, err = DialQMP(ctx, sock)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("DialQMP: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer q.Close()
	raw, err := q.Execute(ctx, "query-version", nil)
	if err != nil {
		t.Fatalf("query-version: %v", err)
	}
	var v struct {
		QEMU struct{ Major int } `json:"qemu"`
	}
	if err := json.Unmarshal(raw, &v); err != nil || v.QEMU.Major < 7 {
		t.Fatalf("query-version = %s (%v)", raw, err)
	}
	if _, err := q.Execute(ctx, "no-such-command", nil); err == nil || !strings.Contains(err.Error(), "CommandNotFound") {
		t.Fatalf("unknown command error = %v, want CommandNotFound", err)
	}
	st, err := q.Status(ctx)
	if err != nil || st == "" {
		t.Fatalf("Status() = %q, %v", st, err)
	}
	if _, err := q.Execute(ctx, "quit", nil); err != nil {
		t.Fatalf("quit: %v", err)
	}
	var sawShutdown bool
	for ev := range q.Events() {
		if ev.Event == "SHUTDOWN" {
			var d ShutdownData
			_ = json.Unmarshal(ev.Data, &d)
			sawShutdown = d.Reason == "host-qmp-quit"
		}
	}
	select {
	case <-q.Done():
	case <-ctx.Done():
		t.Fatal("QMP connection not closed after quit")
	}
	if !sawShutdown {
		t.Error("no SHUTDOWN event with reason host-qmp-quit")
	}
}
