package api

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/guest"
	"github.com/confidant-cvm/confidant/hostd/internal/preflight"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/unixsock/unixsocktest"
)

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startAPI runs the API over a real manager (no guest is booted here).
func startAPI(t *testing.T, pre guest.PreflightFunc) (*Client, string) {
	t.Helper()
	dir := shortDir(t)
	m, err := guest.New(t.Context(), guest.Options{StateDir: filepath.Join(dir, "state"), Preflight: pre, QEMU: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	return serveManager(t, dir, m, nil), filepath.Join(dir, "state")
}

// serveManager serves the API over m on dir/hostd.sock until the test
// ends, then closes m, and returns a client of it. log may be nil.
func serveManager(t *testing.T, dir string, m *guest.Manager, log *slog.Logger) *Client {
	t.Helper()
	sock := filepath.Join(dir, "hostd.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var hlog *slog.Logger
	if log != nil {
		hlog = log.WithGroup("api")
	}
	go func() { done <- Serve(ctx, ln, NewHandler(m, hlog), log) }()
	t.Cleanup(func() {
		cancel()
		<-done
		m.Close(context.Background(), guest.OnExitStop)
	})
	return NewClient(sock)
}

func testSpec(t *testing.T, name string, tee spec.TEE) *spec.Spec {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"kernel", "initrd", "fw"} {
		os.WriteFile(filepath.Join(dir, f), make([]byte, 4096), 0o644)
	}
	s := &spec.Spec{
		Name: name, TEE: tee, VCPUs: 1, Memory: 256 << 20, Verifier: "127.0.0.1:8443",
		Image: spec.Image{Kernel: filepath.Join(dir, "kernel"), Initrd: filepath.Join(dir, "initrd")},
	}
	if tee != spec.TEESim {
		s.Firmware = spec.Firmware{Kind: spec.FirmwareOVMF, Path: filepath.Join(dir, "fw")}
	} else {
		s.Firmware = spec.Firmware{Kind: spec.FirmwareSeaBIOS} // a direct-boot image
	}
	return s
}

func TestAPIErrors(t *testing.T) {
	refuse := func(ctx context.Context, s *spec.Spec) error {
		return preflight.ErrIsolationUnavailable
	}
	c, _ := startAPI(t, refuse)
	ctx := t.Context()
	if _, err := c.Create(ctx, testSpec(t, "g1", spec.TEESim)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := c.Create(ctx, testSpec(t, "hw", spec.TEESNP)); err != nil {
		t.Fatalf("Create(sev-snp): %v", err)
	}
	relative := testSpec(t, "rel", spec.TEESim)
	relative.Image.Kernel = "kernel"
	tests := map[string]struct {
		call       func() error
		wantErr    error
		wantStatus int
	}{
		"duplicate":     {call: func() error { _, err := c.Create(ctx, testSpec(t, "g1", spec.TEESim)); return err }, wantErr: guest.ErrExists, wantStatus: 409},
		"invalid spec":  {call: func() error { _, err := c.Create(ctx, testSpec(t, "BAD", spec.TEESim)); return err }, wantErr: spec.ErrInvalid, wantStatus: 400},
		"relative path": {call: func() error { _, err := c.Create(ctx, relative); return err }, wantErr: spec.ErrInvalid, wantStatus: 400},
		"unknown get":   {call: func() error { _, err := c.Get(ctx, "nope"); return err }, wantErr: guest.ErrNotFound, wantStatus: 404},
		"unknown start": {call: func() error { _, err := c.Start(ctx, "nope"); return err }, wantErr: guest.ErrNotFound, wantStatus: 404},
		"unknown del":   {call: func() error { return c.Delete(ctx, "nope") }, wantErr: guest.ErrNotFound, wantStatus: 404},
		"preflight":     {call: func() error { _, err := c.Start(ctx, "hw"); return err }, wantErr: preflight.ErrIsolationUnavailable, wantStatus: 412},
		"console":       {call: func() error { return c.Console(ctx, "nope", false, &bytes.Buffer{}) }, wantErr: guest.ErrNotFound, wantStatus: 404},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != tc.wantStatus {
				t.Fatalf("error = %#v, want HTTP %d", err, tc.wantStatus)
			}
		})
	}
}

func TestAPIRawRequests(t *testing.T) {
	c, _ := startAPI(t, nil)
	tests := map[string]struct {
		method, path, body string
		wantStatus         int
		wantCode           string
	}{
		"unknown field":     {method: "POST", path: "/v1/guests", body: `{"name":"x","evil":1}`, wantStatus: 400, wantCode: "invalid_spec"},
		"trailing data":     {method: "POST", path: "/v1/guests", body: `{"name":"x"} {}`, wantStatus: 400, wantCode: "invalid_spec"},
		"not json":          {method: "POST", path: "/v1/guests", body: `name: x`, wantStatus: 400, wantCode: "invalid_spec"},
		"huge body":         {method: "POST", path: "/v1/guests", body: `{"name":"` + strings.Repeat("x", maxBody) + `"}`, wantStatus: 400},
		"stop unknown body": {method: "POST", path: "/v1/guests/x/stop", body: `{"dealloc":true}`, wantStatus: 400, wantCode: "bad_request"},
		"list":              {method: "GET", path: "/v1/guests", wantStatus: 200},
		"no route":          {method: "GET", path: "/v2/guests", wantStatus: 404},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, "http://hostd"+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, buf.String())
			}
			if tc.wantCode != "" && !strings.Contains(buf.String(), `"code": "`+tc.wantCode+`"`) {
				t.Fatalf("body %s lacks code %s", buf.String(), tc.wantCode)
			}
		})
	}
}

func TestAPILifecycleWithoutBoot(t *testing.T) {
	c, stateDir := startAPI(t, nil)
	ctx := t.Context()
	g, err := c.Create(ctx, testSpec(t, "g1", spec.TEESim))
	if err != nil {
		t.Fatal(err)
	}
	if !g.Status.Simulated || g.Status.State != guest.StateStopped {
		t.Fatalf("created = %+v", g.Status)
	}
	gs, err := c.List(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != "g1" {
		t.Fatalf("List = %v, %v", gs, err)
	}
	// Console: what is in the log comes back; follow streams additions.
	logPath := filepath.Join(stateDir, "guests", "g1", "console.log")
	os.WriteFile(logPath, []byte("line one\n"), 0o600)
	var buf bytes.Buffer
	if err := c.Console(ctx, "g1", false, &buf); err != nil || buf.String() != "line one\n" {
		t.Fatalf("Console = %q, %v", buf.String(), err)
	}
	fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	pr := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- c.Console(fctx, "g1", true, pr) }()
	time.Sleep(300 * time.Millisecond)
	f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("line two\n")
	f.Close()
	for !strings.Contains(pr.String(), "line two") && fctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if pr.String() != "line one\nline two\n" {
		t.Fatalf("followed console = %q", pr.String())
	}
	if _, err := c.Stop(ctx, "g1", StopRequest{Deallocate: true}); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Delete(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "g1"); !errors.Is(err, guest.ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
}

func TestListen(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "s.sock")
	// Mode 0600 from the moment it exists at its path, not chmod'ed after.
	ln := unixsocktest.ListenPrivate(t, sock, func() (net.Listener, error) { return Listen(sock) })
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "another hostd") {
		t.Errorf("Listen on a socket in use: %v", err)
	}
	ln.Close()
	// net.UnixListener.Close removes the file; make a stale one.
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	if _, err := Listen(filepath.Join(dir, "file")); err == nil {
		t.Error("Listen replaced a regular file")
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
