package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClientAnswers(t *testing.T) {
	tests := map[string]struct {
		handler  http.HandlerFunc
		call     func(c *Client) error
		wantCode string
	}{
		"verifier error body": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"error":"nonce_reused","reasons":["the nonce was already used"]}`)
			},
			call:     func(c *Client) error { _, err := c.Attest(context.Background(), []byte("{}")); return err },
			wantCode: "nonce_reused",
		},
		"proxy error page": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, "<html>bad gateway</html>")
			},
			call:     func(c *Client) error { _, err := c.Challenge(context.Background()); return err },
			wantCode: "http_502",
		},
		"challenge without nonce": {
			handler:  func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"nonce":""}`) },
			call:     func(c *Client) error { _, err := c.Challenge(context.Background()); return err },
			wantCode: CodeBadResponse,
		},
		"attest without token": {
			handler:  func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"token":"nope"}`) },
			call:     func(c *Client) error { _, err := c.Attest(context.Background(), []byte("{}")); return err },
			wantCode: CodeBadResponse,
		},
		"oversized answer": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"token":"`+strings.Repeat("a", maxSmallBody)+`"}`)
			},
			call:     func(c *Client) error { _, err := c.Attest(context.Background(), []byte("{}")); return err },
			wantCode: CodeBadResponse,
		},
		"release in another content type": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				io.WriteString(w, "a.b.c.d.e")
			},
			call:     func(c *Client) error { _, err := c.Release(context.Background(), "k", "t"); return err },
			wantCode: CodeBadResponse,
		},
		"slow verifier": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
				}
			},
			call:     func(c *Client) error { _, err := c.Challenge(context.Background()); return err },
			wantCode: CodeTransportTimeout,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hs := httptest.NewServer(tc.handler)
			defer hs.Close()
			c, err := NewClient(ClientConfig{BaseURL: hs.URL, Timeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = tc.call(c)
			if got := Code(err); got != tc.wantCode {
				t.Errorf("code %q (%v), want %q", got, err, tc.wantCode)
			}
		})
	}
}

func TestClientRequests(t *testing.T) {
	var got []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type"))
		switch r.URL.Path {
		case "/base/v1/challenge":
			io.WriteString(w, `{"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","expires_at":"2030-01-01T00:00:00Z"}`)
		case "/base/v1/attest":
			io.WriteString(w, `{"token":"a.b.c"}`)
		case "/base/v1/keys/os%2Fdisk/release", "/base/v1/keys/os/disk/release":
			w.Header().Set("Content-Type", "application/jose")
			io.WriteString(w, "h.k.i.c.t\n")
		}
	}))
	defer hs.Close()
	c, err := NewClient(ClientConfig{BaseURL: hs.URL + "/base/", Connections: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := c.Challenge(ctx); err != nil || len(n) != 32 {
		t.Fatalf("Challenge = %x, %v", n, err)
	}
	if tok, err := c.Attest(ctx, []byte(`{}`)); err != nil || tok != "a.b.c" {
		t.Fatalf("Attest = %q, %v", tok, err)
	}
	if jwe, err := c.Release(ctx, "os/disk", "a.b.c"); err != nil || string(jwe) != "h.k.i.c.t" {
		t.Fatalf("Release = %q, %v", jwe, err)
	}
	want := []string{
		"POST /base/v1/challenge  ",
		"POST /base/v1/attest  application/json",
		"POST /base/v1/keys/os/disk/release Bearer a.b.c ",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}
	if tr := c.http.Transport.(*http.Transport); tr.MaxIdleConnsPerHost != 3 {
		t.Errorf("MaxIdleConnsPerHost = %d", tr.MaxIdleConnsPerHost)
	}
	for _, bad := range []string{"", "127.0.0.1:8443", "ftp://x", "http://"} {
		if _, err := NewClient(ClientConfig{BaseURL: bad}); err == nil {
			t.Errorf("NewClient(%q): no error", bad)
		}
	}
}

func TestCode(t *testing.T) {
	tests := map[error]string{
		nil:                                       "",
		&APIError{Status: 403, Code: "x"}:         "x",
		fmt.Errorf("a: %w", &genError{io.EOF}):    CodeEvidenceGenFailed,
		fmt.Errorf("a: %w", ErrUnwrap):            CodeUnwrapFailed,
		ErrMismatch:                               CodeReleaseMismatch,
		fmt.Errorf("a: %w", ErrResponse):          CodeBadResponse,
		fmt.Errorf("a: %w", syscall.ECONNREFUSED): CodeTransportRefused,
		syscall.ECONNRESET:                        CodeTransportReset,
		syscall.EADDRNOTAVAIL:                     CodeTransportNoAddr,
		context.DeadlineExceeded:                  CodeTransportTimeout,
		io.ErrUnexpectedEOF:                       CodeTransportEOF,
		errors.New("something else"):              CodeTransportOther,
	}
	for err, want := range tests {
		if got := Code(err); got != want {
			t.Errorf("Code(%v) = %q, want %q", err, got, want)
		}
	}
}
