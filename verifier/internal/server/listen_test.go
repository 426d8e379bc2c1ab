//go:build cgo

package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/api"
)

// TestMetricsListen: with --metrics-listen, /metrics is served there and
// not on the public listener; without it, on the public listener.
func TestMetricsListen(t *testing.T) {
	t.Run("public", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		if r := f.do(http.MethodGet, "/metrics", nil); r.status != http.StatusOK || !bytes.Contains(r.body, []byte("confidant_verifier_")) {
			t.Fatalf("public /metrics: %v", r)
		}
	})
	t.Run("own listener", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{config: func(c *Config) { c.MetricsListen = "127.0.0.1:0" }})
		if r := f.do(http.MethodGet, "/metrics", nil); r.status != http.StatusNotFound || r.errBody(t).Error != api.CodeNotFound {
			t.Fatalf("public /metrics with --metrics-listen: %v, want 404", r)
		}
		ln, err := f.srv.metricsListener()
		if err != nil || ln == nil {
			t.Fatalf("metrics listener: %v, %v", ln, err)
		}
		ms := f.srv.metricsServer()
		go ms.Serve(ln)
		defer ms.Close()
		resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("confidant_verifier_")) {
			t.Fatalf("metrics listener: %d %.200s", resp.StatusCode, b)
		}
		resp, err = http.Get("http://" + ln.Addr().String() + "/v1/jwks")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("metrics listener serves /v1/jwks: %d", resp.StatusCode)
		}
	})
}

// TestConnectionCap: the public listener holds at most MaxConnections
// connections; one more is accepted only when one closes.
func TestConnectionCap(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.MaxConnections = 2; c.AdminListen = "none" }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	addr := ln.Addr().String()
	get := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	// Two connections, each served once and then held open (keep-alive).
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if line := roundTrip(t, c, get); !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("held connection: %q", line)
		}
		held = append(held, c)
	}
	// A third connects (the kernel queues it) but is not served while two
	// are open.
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if _, err := io.WriteString(third, get); err != nil {
		t.Fatal(err)
	}
	third.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := third.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third connection was served with two held: %d bytes, %v", n, err)
	}
	held[0].Close()
	third.SetReadDeadline(time.Time{})
	if line := readLine(t, third); !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("third connection after one closed: %q", line)
	}
}

func roundTrip(t *testing.T, c net.Conn, req string) string {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return readLine(t, c)
}

// readLine reads a response's status line and drains the rest of a small
// response.
func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line
}
