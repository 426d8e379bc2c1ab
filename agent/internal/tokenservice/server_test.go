package tokenservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRequestCheck(t *testing.T) {
	tests := map[string]struct {
		req     Request
		wantErr error
	}{
		"audience":           {req: Request{Audience: "https://rp.example"}},
		"audience and nonce": {req: Request{Audience: "rp", Nonce: "n-0123456789"}},
		"no audience":        {req: Request{Nonce: "n"}, wantErr: ErrRequest},
		"long audience":      {req: Request{Audience: strings.Repeat("a", MaxAudience+1)}, wantErr: ErrRequest},
		"control audience":   {req: Request{Audience: "rp\nInjected: 1"}, wantErr: ErrRequest},
		"long nonce":         {req: Request{Audience: "rp", Nonce: strings.Repeat("n", MaxNonce+1)}, wantErr: ErrRequest},
		"control nonce":      {req: Request{Audience: "rp", Nonce: "a\x00b"}, wantErr: ErrRequest},
		"invalid UTF-8":      {req: Request{Audience: "rp\xff"}, wantErr: ErrRequest},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tt.req.Check(); !errors.Is(err, tt.wantErr) {
				t.Errorf("Check = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// fakeSource answers token requests without a TPM or a verifier.
type fakeSource struct {
	mu    sync.Mutex
	reqs  []Request
	err   error
	block chan struct{} // if set, Token waits for it
}

func (f *fakeSource) Token(ctx context.Context, req Request) (string, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if f.err != nil {
		return "", f.err
	}
	return testToken, nil
}

// testToken is a JWT-shaped token with jti "tok-1".
const testToken = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ0b2stMSIsImV4cCI6NDEwMjQ0NDgwMH0.c2lnbmF0dXJl"

// serve runs srv on a unix socket and returns an HTTP client for it.
func serve(t *testing.T, srv *Server) (*http.Client, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	return c, path
}

func get(t *testing.T, c *http.Client, method, query string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://agent/v1/token?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(b, &body)
	return resp.StatusCode, resp.Header, body
}

func TestServer(t *testing.T) {
	tests := map[string]struct {
		method     string
		query      string
		err        error
		wantStatus int
		wantCode   string
		wantReq    *Request
	}{
		"token": {
			query: "audience=https%3A%2F%2Frp.example&nonce=n-1", wantStatus: http.StatusOK,
			wantReq: &Request{Audience: "https://rp.example", Nonce: "n-1"},
		},
		"no audience":      {query: "nonce=n", wantStatus: http.StatusBadRequest, wantCode: "bad_request"},
		"control audience": {query: "audience=a%0Ab", wantStatus: http.StatusBadRequest, wantCode: "bad_request"},
		"two audiences":    {query: "audience=a&audience=b", wantStatus: http.StatusBadRequest, wantCode: "bad_request"},
		"two nonces":       {query: "audience=a&nonce=1&nonce=2", wantStatus: http.StatusBadRequest, wantCode: "bad_request"},
		"attestation fails": {
			query: "audience=a", err: errors.New("getting a challenge: retry budget exhausted"),
			wantStatus: http.StatusBadGateway, wantCode: "attestation_failed", wantReq: &Request{Audience: "a"},
		},
		"POST": {method: http.MethodPost, query: "audience=a", wantStatus: http.StatusMethodNotAllowed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			src := &fakeSource{err: tt.err}
			var logs bytes.Buffer
			c, _ := serve(t, &Server{Source: src, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			status, hdr, body := get(t, c, method, tt.query)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d (%v)", status, tt.wantStatus, body)
			}
			if tt.wantCode != "" && body["error"] != tt.wantCode {
				t.Errorf("error code %v, want %s", body["error"], tt.wantCode)
			}
			switch {
			case tt.wantReq == nil && len(src.reqs) > 0:
				t.Errorf("the source was asked: %+v", src.reqs)
			case tt.wantReq != nil && (len(src.reqs) != 1 || src.reqs[0] != *tt.wantReq):
				t.Errorf("requests %+v, want %+v", src.reqs, *tt.wantReq)
			}
			if status != http.StatusOK {
				return
			}
			if body["token"] != testToken || hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("body %v, Cache-Control %q", body, hdr.Get("Cache-Control"))
			}
			// The log names the peer and the token's jti, never the token.
			want := fmt.Sprintf("peer_uid=%d", os.Getuid())
			if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "jti=tok-1") {
				t.Errorf("log lacks %s and jti=tok-1:\n%s", want, logs.String())
			}
			if strings.Contains(logs.String(), strings.Split(testToken, ".")[2]) {
				t.Errorf("the log holds the token:\n%s", logs.String())
			}
		})
	}
}

func TestServerBusy(t *testing.T) {
	src := &fakeSource{block: make(chan struct{})}
	c, _ := serve(t, &Server{Source: src, MaxPending: 1})
	first := make(chan int, 1)
	go func() {
		status, _, _ := get(t, c, http.MethodGet, "audience=a")
		first <- status
	}()
	// Wait until the first request holds the only slot.
	for deadline := time.Now().Add(5 * time.Second); ; {
		src.mu.Lock()
		n := len(src.reqs)
		src.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first request never reached the source")
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, _, body := get(t, c, http.MethodGet, "audience=b")
	if status != http.StatusServiceUnavailable || body["error"] != "busy" {
		t.Errorf("second request: %d %v, want 503 busy", status, body)
	}
	close(src.block)
	if s := <-first; s != http.StatusOK {
		t.Errorf("first request: %d", s)
	}
}

func TestServerTimeout(t *testing.T) {
	src := &fakeSource{block: make(chan struct{})}
	defer close(src.block)
	c, _ := serve(t, &Server{Source: src, Timeout: 50 * time.Millisecond})
	status, _, body := get(t, c, http.MethodGet, "audience=a")
	if status != http.StatusBadGateway || !strings.Contains(fmt.Sprint(body["reasons"]), "deadline exceeded") {
		t.Errorf("status %d %v, want 502 with the deadline", status, body)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.sock")

	ln, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket %v, %v; want a 0660 socket", fi.Mode(), err)
	}
	// Closing a unix listener removes its socket; leave a stale one behind
	// as a crashed server would.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen(path, 0o600)
	if err != nil {
		t.Fatalf("replacing a stale socket: %v", err)
	}
	ln.Close()

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, 0o600); err == nil {
		t.Error("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("the regular file was changed")
	}
}

func TestWorkload(t *testing.T) {
	for req, want := range map[Request]string{
		{Audience: "a"}:                        "",
		{Audience: "a", Nonce: "n-1"}:          `{"nonce":"n-1"}`,
		{Audience: "a", Nonce: `q"<&>\`}:       `{"nonce":"q\"\u003c\u0026\u003e\\"}`,
		{Audience: "a", Nonce: "é" + "\u2028"}: `{"nonce":"é\u2028"}`,
	} {
		got, err := req.workload()
		if err != nil || string(got) != want {
			t.Errorf("workload(%+v) = %s, %v; want %s", req, got, err, want)
		}
	}
}

// FuzzRequest: whatever a workload sends, Check never panics, and what it
// accepts makes a valid workload object and an audience without control
// characters.
func FuzzRequest(f *testing.F) {
	f.Add("https://rp.example", "n-1")
	f.Add("rp\n", "")
	f.Add("", "\xff\x00")
	f.Fuzz(func(t *testing.T, audience, nonce string) {
		req := Request{Audience: audience, Nonce: nonce}
		if req.Check() != nil {
			return
		}
		if audience == "" || strings.ContainsFunc(audience+nonce, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted %+v", req)
		}
		wl, err := req.workload()
		if err != nil || (nonce != "" && !json.Valid(wl)) || (nonce == "" && wl != nil) {
			t.Fatalf("workload %s, %v", wl, err)
		}
	})
}
