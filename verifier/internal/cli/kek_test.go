package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/seal"
)

// envRunMain makes the test binary run Main instead of the tests, so that
// a test can start the real verifier as a child process.
const envRunMain = "CONFIDANT_VERIFIER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// logBuffer collects a child's log and signals each line.
type logBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startServe starts "confidant-verifier serve" as a child process with the
// given extra files (fd 3 on) and environment additions, and waits until it
// serves. It is stopped when the test ends.
func startServe(t *testing.T, extra []*os.File, env []string, args ...string) (*exec.Cmd, *logBuffer) {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"serve", "--state-dir", filepath.Join(dir, "state"), "--listen", "127.0.0.1:0",
		"--admin-listen", "none", "--policy", policies + "/appraisal/sim_development.rego",
		"--reference-values", golden + "/reference.json"}, args...)
	cmd := exec.Command(os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, kekEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, envRunMain+"=1"), env...)
	cmd.ExtraFiles = extra
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.mu.Lock()
			logs.buf.WriteString(sc.Text() + "\n")
			logs.mu.Unlock()
			select {
			case logs.lines <- sc.Text():
			default:
			}
		}
		close(logs.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	// Not a bound on speed: only so that a verifier that never serves
	// fails the test instead of hanging it.
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-logs.lines:
			if !ok {
				t.Fatalf("verifier exited before serving:\n%s", logs)
			}
			if strings.Contains(line, "msg=serving ") {
				return cmd, logs
			}
		case <-deadline:
			t.Fatalf("verifier not serving:\n%s", logs)
		}
	}
}

// encodings are the forms a KEK could leak in.
func encodings(kek []byte) map[string][]byte {
	return map[string][]byte{
		"raw":       kek,
		"hex":       []byte(hex.EncodeToString(kek)),
		"HEX":       []byte(strings.ToUpper(hex.EncodeToString(kek))),
		"base64":    []byte(base64.RawStdEncoding.EncodeToString(kek)),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(kek)),
	}
}

func assertNoKEK(t *testing.T, what string, b []byte, kek []byte) {
	t.Helper()
	for name, enc := range encodings(kek) {
		if bytes.Contains(b, enc) {
			t.Errorf("%s holds the KEK (%s)", what, name)
		}
	}
}

func newKEK(t *testing.T) []byte {
	t.Helper()
	kek := make([]byte, seal.KeySize)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	return kek
}

func kekID(t *testing.T, kek []byte) string {
	t.Helper()
	s, err := seal.New(kek)
	if err != nil {
		t.Fatal(err)
	}
	return s.ID()
}

// TestServeKEKFromFD runs the real verifier with its KEK on fd 3 (as
// "3<kekfile" in a shell): it uses that KEK, closes the descriptor, and
// the KEK is neither in /proc/PID/environ nor in its log.
func TestServeKEKFromFD(t *testing.T) {
	kek := newKEK(t)
	for name, open := range map[string]func(t *testing.T) *os.File{
		"raw bytes in a file": func(t *testing.T) *os.File {
			path := filepath.Join(t.TempDir(), "kek")
			if err := os.WriteFile(path, kek, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			return f
		},
		"hex through a pipe": func(t *testing.T) *os.File {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(w, hex.EncodeToString(kek)+"\n"); err != nil {
				t.Fatal(err)
			}
			w.Close()
			return r
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := open(t)
			defer r.Close()
			cmd, logs := startServe(t, []*os.File{r}, nil, "--kek-fd", "3")
			pid := strconv.Itoa(cmd.Process.Pid)
			environ, err := os.ReadFile("/proc/" + pid + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			assertNoKEK(t, "/proc/PID/environ", environ, kek)
			// No descriptor of the verifier (fd 3 is reused by now) is the
			// KEK's file or pipe any more.
			given, err := r.Stat()
			if err != nil {
				t.Fatal(err)
			}
			fds, err := os.ReadDir("/proc/" + pid + "/fd")
			if err != nil {
				t.Fatal(err)
			}
			for _, fd := range fds {
				if fi, err := os.Stat("/proc/" + pid + "/fd/" + fd.Name()); err == nil && os.SameFile(fi, given) {
					t.Errorf("the verifier keeps the KEK open as fd %s", fd.Name())
				}
			}
			if !strings.Contains(logs.String(), "kek_id="+kekID(t, kek)) {
				t.Errorf("the verifier does not use the KEK from fd 3:\n%s", logs)
			}
			assertNoKEK(t, "the log", []byte(logs.String()), kek)
		})
	}
}

// TestServeKEKFromEnvWarns: the environment variable still works, and the
// log says that it stays readable in /proc/PID/environ (which it does),
// without the KEK itself.
func TestServeKEKFromEnvWarns(t *testing.T) {
	kek := newKEK(t)
	cmd, logs := startServe(t, nil, []string{kekEnv + "=" + hex.EncodeToString(kek)})
	out := logs.String()
	want := fmt.Sprintf("%s is visible in /proc/%d/environ for the life of the process; use --kek-file or --kek-fd",
		kekEnv, cmd.Process.Pid)
	warned := false
	for _, line := range strings.Split(out, "\n") {
		warned = warned || strings.Contains(line, "level=WARN") && strings.Contains(line, want)
	}
	if !warned {
		t.Errorf("no warning %q in the log:\n%s", want, out)
	}
	if !strings.Contains(out, "kek_id="+kekID(t, kek)) {
		t.Errorf("the verifier does not use the KEK from %s:\n%s", kekEnv, out)
	}
	assertNoKEK(t, "the log", []byte(out), kek)
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(environ, []byte(hex.EncodeToString(kek))) {
		t.Error("the warning is wrong: the KEK is not in /proc/PID/environ")
	}
}

// dupPipe returns a descriptor (the caller's to give away) to read
// content from.
func dupPipe(t *testing.T, content string) int {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.WriteString(w, content); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fd, err := syscall.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestKEKErrorsHideTheKEK: a malformed or doubly given KEK is refused, and
// the error does not quote it.
func TestKEKErrorsHideTheKEK(t *testing.T) {
	almost := hex.EncodeToString(bytes.Repeat([]byte{0x5a}, 31)) // one byte short
	good := hex.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	tests := map[string]struct {
		env     string
		fd      string // pipe content; "" means no --kek-fd
		file    bool
		wantErr string
	}{
		"env malformed":    {env: almost, wantErr: "want 32 bytes"},
		"fd malformed":     {fd: almost, wantErr: "want 32 bytes"},
		"fd too long":      {fd: strings.Repeat(good, 100), wantErr: "more than"},
		"env and fd":       {env: good, fd: good, wantErr: "one way"},
		"file and fd":      {fd: good, file: true, wantErr: "one way"},
		"fd is stdout":     {wantErr: "stdout", fd: "-"},
		"env and kek-file": {env: good, file: true, wantErr: "one way"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"keys", "list", "--state-dir", dir}
			if tt.env != "" {
				t.Setenv(kekEnv, tt.env)
			}
			switch tt.fd {
			case "":
			case "-":
				args = append(args, "--kek-fd", "1")
			default:
				args = append(args, "--kek-fd", strconv.Itoa(dupPipe(t, tt.fd)))
			}
			if tt.file {
				args = append(args, "--kek-file", filepath.Join(dir, "kek"))
			}
			_, err := run(t, args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
			}
			for _, secret := range []string{almost, good} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error quotes the KEK: %v", err)
				}
			}
		})
	}
}
