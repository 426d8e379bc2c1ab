package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// guestPair returns the relay's guest side and the guest's own end of a
// unix stream socket pair (what slirp hands the relay).
func guestPair(t *testing.T) (relaySide *net.UnixConn, guestSide *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "g.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); r.Close() })
	return r, g
}

// verifier listens on loopback; serve runs for each connection.
func verifier(t *testing.T, serve func(net.Conn)) (addr string, conns <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- struct{}{}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String(), ch
}

func runAsync(ctx context.Context, g Guest, addr string, opts Options) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- Run(ctx, g, addr, opts) }()
	return ch
}

func wait(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// TestRunHalfClose: the guest sends a request and half-closes; the
// verifier reads to the end, answers and closes; the guest reads the whole
// answer and the end of stream, and Run returns nil.
func TestRunHalfClose(t *testing.T) {
	addr, conns := verifier(t, func(c net.Conn) {
		req, _ := io.ReadAll(c)
		io.WriteString(c, "answer to "+string(req))
	})
	r, g := guestPair(t)
	done := runAsync(t.Context(), r, addr, Options{})
	if _, err := io.WriteString(g, "request"); err != nil {
		t.Fatal(err)
	}
	if err := g.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The end of the answer arrives as a half-close, well before Linger.
	g.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "answer to request" {
		t.Fatalf("guest read %q", got)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if n := len(conns); n != 1 {
		t.Fatalf("verifier saw %d connections, want 1", n)
	}
}

// TestRunVerifierCloses: the verifier closes first (as an idle timeout
// does); the guest sees the end of stream, closes, and Run returns.
func TestRunVerifierCloses(t *testing.T) {
	addr, _ := verifier(t, func(c net.Conn) { io.WriteString(c, "bye") })
	r, g := guestPair(t)
	done := runAsync(t.Context(), r, addr, Options{})
	g.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(g)
	if err != nil || string(got) != "bye" {
		t.Fatalf("guest read %q, %v", got, err)
	}
	g.Close()
	if err := wait(t, done); err != nil {
		t.Fatalf("Run() error = %v", err)
	}
}

// TestRunLinger: after the verifier has closed, a guest that never closes
// is cut off after Linger.
func TestRunLinger(t *testing.T) {
	addr, _ := verifier(t, func(net.Conn) {})
	r, g := guestPair(t)
	start := time.Now()
	done := runAsync(t.Context(), r, addr, Options{Linger: 200 * time.Millisecond})
	if err := wait(t, done); err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("Run returned after %v, before the linger", d)
	}
	// The guest's connection is closed: writes fail or reads end.
	g.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := g.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("guest read after Run: %v, want EOF", err)
	}
}

// TestRunVerifierDown: nothing listens; Run fails fast and closes the
// guest's connection without writing to it.
func TestRunVerifierDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, g := guestPair(t)
	if err := wait(t, runAsync(t.Context(), r, addr, Options{DialTimeout: time.Second})); err == nil {
		t.Fatal("Run() error = nil with no verifier")
	}
	g.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(g)
	if err != nil || len(got) != 0 {
		t.Fatalf("guest read %q, %v; want nothing and EOF", got, err)
	}
}

// TestRunContext: cancelling ends an open relay.
func TestRunContext(t *testing.T) {
	addr, _ := verifier(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	r, _ := guestPair(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := runAsync(ctx, r, addr, Options{})
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := wait(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run() error = %v, want context.Canceled", err)
	}
}

func TestCheckAddress(t *testing.T) {
	tests := map[string]struct {
		addr    string
		wantErr error
	}{
		"ipv4":      {addr: "127.0.0.1:8443"},
		"name":      {addr: "verifier.example:443"},
		"no port":   {addr: "127.0.0.1", wantErr: ErrAddress},
		"no host":   {addr: ":8443", wantErr: ErrAddress},
		"port zero": {addr: "127.0.0.1:0", wantErr: ErrAddress},
		"port big":  {addr: "127.0.0.1:70000", wantErr: ErrAddress},
		"named":     {addr: "127.0.0.1:https", wantErr: ErrAddress},
		"empty":     {addr: "", wantErr: ErrAddress},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := CheckAddress(tc.addr); !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckAddress(%q) error = %v, want %v", tc.addr, err, tc.wantErr)
			}
		})
	}
	r, _ := guestPair(t)
	if err := Run(t.Context(), r, "nowhere", Options{}); !errors.Is(err, ErrAddress) {
		t.Fatalf("Run(bad address) error = %v, want ErrAddress", err)
	}
}

// TestStdioPipes: with pipes as stdin and stdout (no sockets), Stdio
// relays and CloseWrite ends the output.
func TestStdioPipes(t *testing.T) {
	addr, _ := verifier(t, func(c net.Conn) {
		req, _ := io.ReadAll(c)
		io.WriteString(c, strings.ToUpper(string(req)))
	})
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &stdio{}
	if g.in, err = fileConn(inR); err != nil {
		t.Fatal(err)
	}
	if g.out, err = fileConn(outW); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	done := runAsync(t.Context(), g, addr, Options{})
	io.WriteString(inW, "hello")
	inW.Close()
	got, err := io.ReadAll(outR)
	if err != nil || string(got) != "HELLO" {
		t.Fatalf("read %q, %v", got, err)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("Run() error = %v", err)
	}
}
