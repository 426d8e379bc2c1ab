// Package admintest runs a real confidant-verifier for tests of the image
// tool: the binary is built from this module (Go's internal rule keeps its
// packages out of reach) and serves in a temporary state directory, with
// the development appraisal policy, on a loopback port and the admin unix
// socket. Test-only.
package admintest

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds the wait for /readyz.
const startTimeout = 30 * time.Second

// Verifier is a running confidant-verifier.
type Verifier struct {
	// Bin is the confidant-verifier binary.
	Bin string
	// StateDir is its state directory; Socket its admin socket in it.
	StateDir, Socket string
	// URL is its public API, http://127.0.0.1:PORT.
	URL string

	cmd      *exec.Cmd
	log      *syncBuffer
	stopOnce sync.Once
	done     chan struct{}
}

// RepoRoot is the module's root directory (where go.mod is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
}

// Build builds confidant-verifier into dir and returns its path.
func Build(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "confidant-verifier")
	cmd := exec.Command("go", "build", "-o", bin, "./verifier/cmd/confidant-verifier")
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build confidant-verifier: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start builds confidant-verifier and serves it until the test ends.
func Start(t testing.TB) *Verifier {
	t.Helper()
	return StartBinary(t, Build(t, t.TempDir()))
}

// StartBinary serves the confidant-verifier binary bin until the test ends
// (or Stop), and waits until it is ready.
func StartBinary(t testing.TB, bin string) *Verifier {
	t.Helper()
	// A short path: unix socket names are limited to 108 bytes.
	state, err := os.MkdirTemp("", "cv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	root := RepoRoot(t)
	v := &Verifier{Bin: bin, StateDir: state, Socket: filepath.Join(state, "admin.sock"), log: &syncBuffer{}, done: make(chan struct{})}
	for attempt := 0; ; attempt++ {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		v.URL = "http://" + addr
		v.cmd = exec.Command(bin, "serve", "--listen", addr, "--state-dir", state,
			"--policy", filepath.Join(root, "policies", "appraisal", "sim_development.rego"),
			"--reference-values", filepath.Join(root, "policies", "reference-values.example.json"),
			"--shutdown-timeout", "2s")
		v.cmd.Stdout, v.cmd.Stderr = v.log, v.log
		if err := v.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() {
			_ = v.cmd.Wait()
			close(exited)
		}()
		err := v.waitReady(exited)
		if err == nil {
			v.done = exited
			break
		}
		_ = v.cmd.Process.Kill()
		<-exited
		// The port may have been taken between freePort and serve.
		if attempt == 2 || !strings.Contains(v.log.String(), "address already in use") {
			t.Fatalf("confidant-verifier serve: %v\n%s", err, v.log.String())
		}
	}
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			t.Logf("confidant-verifier log:\n%s", v.log.String())
		}
	})
	return v
}

func (v *Verifier) waitReady(exited chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return errors.New("exited before it was ready")
		default:
		}
		if resp, err := client.Get(v.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if _, err := os.Stat(v.Socket); err == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return errors.New("not ready in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the verifier (SIGINT, then SIGKILL after 10 s) and waits for
// it. Calling it again does nothing.
func (v *Verifier) Stop() {
	v.stopOnce.Do(func() {
		_ = v.cmd.Process.Signal(os.Interrupt)
		select {
		case <-v.done:
		case <-time.After(10 * time.Second):
			_ = v.cmd.Process.Kill()
			<-v.done
		}
	})
}

// Admin runs `confidant-verifier admin --socket SOCKET args...` and
// returns its stdout; stderr is in the error.
func (v *Verifier) Admin(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, v.Bin, append([]string{"admin", "--socket", v.Socket}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(err.Error() + ": " + stderr.String()))
	}
	return stdout.String(), nil
}

// syncBuffer is a bytes.Buffer safe for the process's two output streams.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
